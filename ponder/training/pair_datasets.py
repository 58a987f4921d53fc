"""Preference pairs for ``ponder train rm --loss bt``: an explicit ``prompt``, or TRL's implicit-prompt conversations.

- Explicit: ``prompt`` (a user message, or {role, content} turns ending with a user turn), ``chosen`` and
  ``rejected`` (assistant texts, or a one-turn ``[{role: assistant, content}]`` list).
- Implicit prompt (TRL's conversational preference rows, no ``prompt`` column): ``chosen`` and ``rejected`` are
  whole conversations that share every turn but their last, an assistant turn; the shared turns are the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError, load_table
from ponder.training.verifier_common import check_completion, check_prompt

Pair = tuple[list[dict[str, str]], str, str]


def read_pairs(path: str | Path) -> list[Pair]:
    """Checked (messages, chosen, rejected) rows of ``path``; a bad row is refused by row (from 0) and column."""
    rows = load_table(path, ())
    missing = [c for c in ("chosen", "rejected") if any(c not in r for r in rows)]  # `prompt` is per row
    if missing:
        raise TrainingInputError(f"{path}: missing column(s) {missing}; found {sorted(rows[0])}")
    return [pair_row(row, f"{path}: row {i}") for i, row in enumerate(rows)]


def pair_row(row: dict[str, Any], where: str) -> Pair:
    """One checked row, with its prompt explicit or implicit (see the module docstring)."""
    if "prompt" in row:
        messages = check_prompt(row["prompt"], where)
        return (
            messages,
            check_completion(row["chosen"], where, "chosen"),
            check_completion(row["rejected"], where, "rejected"),
        )
    chosen, rejected = row["chosen"], row["rejected"]
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, list) or len(value) < 2:
            raise TrainingInputError(
                f"{where}: without a `prompt` column, `{name}` must be a conversation: a list of {{role, content}} "
                "turns ending with the assistant's answer"
            )
        if not isinstance(value[-1], dict) or value[-1].get("role") != "assistant":
            raise TrainingInputError(f"{where}: `{name}` must end with an assistant turn (the answer that is scored)")
    if chosen[:-1] != rejected[:-1]:
        raise TrainingInputError(
            f"{where}: `chosen` and `rejected` must share every turn before their last (TRL's implicit prompt)"
        )
    messages = check_prompt(chosen[:-1], where)
    return messages, check_completion(chosen[-1:], where, "chosen"), check_completion(rejected[-1:], where, "rejected")
