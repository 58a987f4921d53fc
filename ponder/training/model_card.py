"""Write a model folder's README.md (model card) from its ``training_config.json`` and ``eval.json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ponder.tasks import LEVELS, SPLITS
from ponder.training.config_args import to_cli_flags
from ponder.training.measure import format_table
from ponder.training.sft_config import SFTArgs


def level_table() -> str:
    """The difficulty table as markdown."""
    lines = [
        "| level | chain_sum (terms, digits per term) | products (digits of first x second factor) |",
        "|---|---|---|",
    ]
    for level, specs in LEVELS.items():
        chain = next(s for s in specs if s.task == "chain_sum")
        prod = next(s for s in specs if s.task == "products")
        terms = "-".join(map(str, sorted(set(chain.terms))))
        digits = "-".join(map(str, sorted(set(chain.digits))))
        lines.append(f"| {level} | {terms} terms, {digits} digit(s) | {prod.digits[0]} x {prod.digits[1]} |")
    return "\n".join(lines)


def seed_table() -> str:
    """The seed ranges as markdown."""
    lines = ["| split | seeds |", "|---|---|"]
    lines += [f"| {name} | [{r.start:,}, {r.stop:,}) |" for name, r in SPLITS.items()]
    return "\n".join(lines)


# the flags `make models` spells out; the rest stay default
_RECIPE_FLAGS = (
    "train_size",
    "levels",
    "hidden_size",
    "num_layers",
    "intermediate_size",
    "batch_size",
    "learning_rate",
    "group_by_length",
    "seed",
    "threads",
    "init_model",
    "data_offset",
    "natural_fraction",
    "system_fraction",
    "two_term_fraction",
    "off_topic_fraction",
    "wide_questions",
    "wide_system_prompts",
    "instruction_fraction",
)


def _wide(mix: dict) -> str:
    """What the mix composed from parts instead of drawing from fixed lists, as a sentence ('' for nothing)."""
    wide = [
        what
        for key, what in (("wide_questions", "half the natural questions"), ("wide_system", "the system prompts"))
        if mix.get(key)
    ]
    text = f" Composed from parts rather than drawn from short fixed lists: {' and '.join(wide)}." if wide else ""
    if mix.get("instruction"):
        text += f" {mix['instruction']:.0%} of the natural questions end with an instruction ('Show your work.')."
    return text


def _last_logged_loss(folder: Path) -> float | None:
    """The last ``loss`` in ``logs/train.jsonl``, None without one."""
    path = folder / "logs" / "train.jsonl"
    logged = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return next((r["loss"] for r in reversed(logged) if "loss" in r), None)


def _format_section(folder: Path, args: dict[str, Any]) -> list[str | None]:
    """Title, summary and the Format section (None marks a line left out)."""
    sidecar = (folder / "ponder.json").read_text() if (folder / "ponder.json").is_file() else None
    how = (
        f"continued by `ponder train sft` from `{args['init_model']}` (an earlier stage: `make models` runs every "
        "stage, from scratch)"
        if args.get("init_model")
        else "trained from scratch by `ponder train sft`"
    )
    return [
        f"# {folder.name}: the bundled tiny arithmetic thinker",
        "",
        f"A character-level Llama {how} (TRL `SFTTrainer`, loss on the "
        "assistant turn only) to solve arithmetic in steps: it writes `<think>`, one equation per "
        "line, `</think>`, then only the final number. It is deliberately small and makes mistakes, so that "
        "test-time compute (sampling, voting, verifier-guided search) visibly helps it. Ponder serves it by default.",
        "",
        "## Format",
        "",
        "- Prompt: the question as the user turn (reasoning-gym's wording, or as people ask: `What is 12+7?`, "
        "`3*41?`, a bare expression; a system turn is fine); the chat template renders "
        "`<|user|>QUESTION<|end|><|assistant|>`. What is not arithmetic gets an empty think block and a short "
        "refusal.",
        "- Output: `<think>467+914=1381\\n1381-123=1258\\n</think>1258<|end|>`. Chains are written as running sums; "
        "products as one partial product per non-zero digit of the second factor, then their sum.",
        f"- `ponder.json` tells the server the step separator and answer format: `{json.dumps(json.loads(sidecar))}`"
        if sidecar
        else None,
        "- Tokenizer: one token per character; role tokens (`<|user|>`, `<|assistant|>`, `<|end|>` = EOS, ...) are "
        "special; `<think>` and `</think>` are single, non-special tokens (they survive decoding).",
        "",
    ]


def _data_section(train: dict[str, Any]) -> list[str]:
    """The Data section: reasoning-gym levels, seed ranges and what was trained on."""
    data = train["data"]
    parts = [
        "## Data",
        "",
        f"Problems from `reasoning-gym` {train['versions'].get('reasoning-gym', '')} (`chain_sum`, `products`), "
        "worded and graded (`score_answer`) exactly as reasoning-gym does; products whose factors have different "
        "digit counts keep reasoning-gym's wording and grading with a second-factor digit count of their own. "
        "Levels (`ponder/tasks/levels.py`):",
        "",
        level_table(),
        "",
        "Seed ranges (a problem's seed seeds reasoning-gym's generator for it; splits never share a seed):",
        "",
        seed_table(),
        "",
    ]
    if "train" not in data:
        return [*parts, f"Trained on {data['rows']:,} chats from `{data['source']}`.", ""]
    mix = data.get("mix") or {}
    if any(mix.values()):
        parts += [
            "The chats are mixed as people ask (`ponder/training/chat_mix.py`, `ponder/tasks/phrasings.py`): "
            f"{mix['natural']:.0%} of the problems in a natural wording instead of reasoning-gym's, "
            f"{mix['system']:.0%} of the chats with a system turn, extra two-term problems mixing one- and two-digit "
            f"numbers ({mix['two_term']:.0%} of the problem count) and off-topic prompts answered with the refusal "
            f"({mix['off_topic']:.0%}).{_wide(mix)} The wordings used to measure below are never trained on.",
            "",
        ]
    return [
        *parts,
        f"Trained on {data['train']['count']:,} train problems (seeds {data['train']['seeds'][0]:,} to "
        f"{data['train']['seeds'][1] - 1:,}), levels round-robin over `{data['levels_round_robin']}` (a repeated "
        f"level is weighted), tasks alternating within a level; {data['validation']['count']} validation problems "
        "for the eval loss.",
        "",
    ]


def _training_section(train: dict[str, Any], config: dict[str, Any], last_loss: float | None) -> list[str]:
    """The Model and training section: architecture, optimiser, time, losses, versions."""
    args, seconds = train["args"], train["seconds"]
    return [
        "## Model and training",
        "",
        f"- `LlamaForCausalLM`: {train['parameters'] / 1e6:.2f}M parameters, hidden {config['hidden_size']}, "
        f"{config['num_hidden_layers']} layers, {config['num_attention_heads']} heads of dim {config['head_dim']} "
        f"(vLLM's CPU attention needs 64), MLP {config['intermediate_size']}, vocab {config['vocab_size']}, "
        f"context {config['max_position_embeddings']}, tied embeddings, float32.",
        f"- {train['steps']} steps, batch {args['batch_size']} x accumulation {args['grad_accum']}, AdamW lr "
        f"{args['learning_rate']} ({args['lr_scheduler']}, warmup {args['warmup_ratio']}), weight decay "
        f"{args['weight_decay']}, seed {args['seed']}.",
        f"- Time: {seconds['train'] / 60:.1f} min of training ({seconds['total'] / 60:.1f} min in all, data "
        f"generation and tokenisation included) on {train['threads']} CPU thread(s), shared with other work.",
        f"- Train loss: {train['metrics'].get('train_loss', float('nan')):.4f} averaged over the run"
        + (f", {last_loss:.4f} over the last logged steps" if last_loss is not None else "")
        + (f"; validation loss {train['metrics']['eval_loss']:.4f}" if "eval_loss" in train["metrics"] else "")
        + ". Logs: `logs/train.log`, `logs/train.jsonl`.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in train['versions'].items())}.",
        "",
    ]


def _reproduce_section(folder: Path, args: dict[str, Any]) -> list[str]:
    """The command that retrains this folder, with the recipe's flags spelled out."""
    skip = tuple(name for name in args if name not in _RECIPE_FLAGS)
    flags = " ".join(to_cli_flags(SFTArgs(**args), skip=skip, defaults=True))
    return [
        "Reproduce (this is what `make models` runs; the same flags give the same data, initialisation and data "
        "order, though float results may differ across CPUs and thread counts):",
        "",
        "```",
        f"OMP_WAIT_POLICY=PASSIVE ponder train sft --output-dir {folder} --overwrite {flags}",
        "```",
        "",
    ]


def _measured_section(evaluation: dict[str, Any], vllm_eval: dict[str, Any] | None) -> list[str]:
    """The Measured section: overall and per-task accuracy, train overlap, the vLLM cross-check, commands."""
    k = evaluation["samples"]
    parts = [
        "## Measured",
        "",
        f"{evaluation['count']} held-out `{evaluation['split']}` problems, levels round-robin "
        f"({evaluation['count'] // len(evaluation['levels'])} per level, half chain_sum, half products), "
        f"{evaluation['engine']} engine: greedy accuracy, pass@{k} of {k} samples at temperature "
        f"{evaluation['temperature']}, and the mean accuracy of those samples. A problem counts as solved "
        "when reasoning-gym's `score_answer` gives the text after `</think>` a full 1.0.",
        "",
        format_table(evaluation),
        "",
        "By task:",
        "",
        "| task | greedy | " + f"pass@{k} |",
        "|---|---|---|",
        *[
            f"| {t} | {s['greedy']:.1%} | {s.get(f'pass@{k}', float('nan')):.1%} |"
            for t, s in evaluation["by_task"].items()
        ],
        "",
    ]
    seen = evaluation["overall"].get("seen_in_training")
    if seen is not None:
        parts += [
            f"The seeds are disjoint, but {seen:.0%} of these test questions also occur, as text, among the "
            "training problems: small levels have few distinct questions (level 1: 4,200 chains and 100 "
            "products), so different seeds draw the same one. The last two columns show how many, and the "
            "greedy accuracy on the rest.",
            "",
        ]
    commands = [evaluation.get("command", "python -m ponder.training.measure ...")]
    if vllm_eval:
        parts += _vllm_lines(vllm_eval)
        commands.append(vllm_eval.get("command", ""))
    return [*parts, "Commands:", "", "```", *commands, "```", ""]


def _vllm_lines(vllm_eval: dict[str, Any]) -> list[str]:
    """The vLLM cross-check paragraph."""
    o, kv = vllm_eval["overall"], vllm_eval["samples"]
    return [
        "The same problems through vLLM's offline engine (CPU build), which loads this folder as it is: "
        f"greedy {o['greedy']:.1%}, pass@{kv} {o.get(f'pass@{kv}', 0):.1%}, mean sampled accuracy "
        f"{o.get('sample_acc', 0):.1%} (samples differ from run to run and engine to engine).",
        "",
    ]


_LIMITATIONS = (
    "## Limitations",
    "",
    "Only sums, differences and products of whole numbers, in the shapes above; it refuses other questions, and a "
    "question it has never seen the like of may get a wrong sum or a wrong refusal. Accuracy falls with the number "
    "of steps and digits by design.",
    "",
)


def _phrasings_section(phrasings: dict[str, Any]) -> list[str]:
    """How it copes with how people ask (``eval_phrasings.json`` of ``python -m ponder.training.phrasing_eval``)."""
    from ponder.training.phrasing_eval import format_table as phrasing_table

    return [
        "## How people ask",
        "",
        f"Greedy, {phrasings['count']} problems per set ({phrasings['engine']} engine): the test problems in "
        "reasoning-gym's wording, in the training wordings, in held-out wordings (with and without a held-out "
        "system prompt), held-out two-term sums of numbers up to two digits, and held-out off-topic prompts "
        "(refused = the exact refusal). Think block well formed = it opens first and closes once.",
        "",
        phrasing_table(phrasings),
        "",
        *[
            f"- `{ex['question']}` -> `{ex['output']!r}` ({'right' if ex['correct'] else 'wrong'})"
            for ex in phrasings["issue_examples"]
        ],
        "",
        "```",
        phrasings.get("command", "python -m ponder.training.phrasing_eval ..."),
        "```",
        "",
    ]


def render_card(
    folder: Path, train: dict[str, Any], evaluation: dict[str, Any] | None, vllm_eval: dict[str, Any] | None = None
) -> str:
    """The model card text."""
    config = json.loads((folder / "config.json").read_text())
    last_loss = _last_logged_loss(folder)
    parts = [
        *_format_section(folder, train["args"]),
        *_data_section(train),
        *_training_section(train, config, last_loss),
        *_reproduce_section(folder, train["args"]),
    ]
    if evaluation:
        parts += _measured_section(evaluation, vllm_eval)
    if (folder / "eval_phrasings.json").is_file():
        parts += _phrasings_section(json.loads((folder / "eval_phrasings.json").read_text()))
    parts += _LIMITATIONS
    return "\n".join(p for p in parts if p is not None)


def write_card(folder: str | Path) -> Path:
    """Write ``folder/README.md``; ``eval.json`` (and a vLLM cross-check ``eval_vllm.json``) are optional."""
    folder = Path(folder)
    train = json.loads((folder / "training_config.json").read_text())
    evaluation, vllm_eval = (
        json.loads((folder / name).read_text()) if (folder / name).is_file() else None
        for name in ("eval.json", "eval_vllm.json")
    )
    path = folder / "README.md"
    path.write_text(render_card(folder, train, evaluation, vllm_eval))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder.training.model_card", description=__doc__)
    parser.add_argument("model_dir")
    print(write_card(parser.parse_args(argv).model_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
