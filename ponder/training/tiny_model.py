"""Build a tiny, randomly initialised Llama with a chat-templated tokenizer (no download)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ponder.training.tokenizer import ALPHABET, CHAT_TEMPLATE, SPECIAL_TOKENS, THINK_TOKENS, build_tokenizer, new_llama

__all__ = ["ALPHABET", "CHAT_TEMPLATE", "SPECIAL_TOKENS", "THINK_TOKENS", "build_tiny_model", "build_tokenizer"]


def build_tiny_model(
    out_dir: str | Path, *, hidden: int = 128, layers: int = 2, max_len: int = 1024, seed: int = 0
) -> Path:
    """Save a random tiny Llama (head dim 64, as vLLM's CPU attention needs) and its tokenizer."""
    out = Path(out_dir)
    tokenizer = build_tokenizer()
    model = new_llama(tokenizer, hidden=hidden, layers=layers, max_len=max_len, seed=seed)
    _mute_special_tokens(model, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _mute_special_tokens(model, tokenizer) -> None:
    """Shrink the special tokens' (tied) embeddings so a random model emits visible text, not role tokens or EOS.

    Tests then see non-empty greedy text and generations that run to ``max_tokens``.
    """
    import torch

    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            weight[tokenizer.convert_tokens_to_ids(token)] *= 0.01


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=build_tiny_model.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_model(args.out_dir, seed=args.seed))


if __name__ == "__main__":
    main()
