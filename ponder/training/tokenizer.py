"""The character-level tokenizer of the bundled models: role tokens, single-token think tags, a chat template."""

from __future__ import annotations

import string
from typing import Any

from ponder.core.reasoning import THINK_TAGS

# `{% generation %}` marks the assistant turn so TRL can train on it alone; its `<|end|>` is inside, so the model
# learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] }}"
    "{% if not loop.last or not continue_final_message %}{{ '<|end|>' }}{% endif %}"
    "{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
# Single tokens but not "special": they must survive detokenisation so the server can split the reasoning off.
THINK_TOKENS = list(THINK_TAGS)
ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"


def build_tokenizer(model_max_length: int = 2048) -> Any:
    """A character-level ``PreTrainedTokenizerFast`` with role tokens, think tags and the chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in ALPHABET:
        vocab.setdefault(ch, len(vocab))
    vocab["<unk>"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def new_llama(
    tokenizer: Any,
    *,
    hidden: int = 128,
    layers: int = 2,
    intermediate: int | None = None,
    max_len: int = 1024,
    seed: int = 0,
) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` for ``tokenizer``: head dim 64 (vLLM's CPU attention needs it)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % 64:
        raise ValueError(f"hidden size {hidden} must be a multiple of 64 (head dim 64)")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        head_dim=64,
        max_position_embeddings=max_len,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
