"""How the bundled verifier models see their input: one featurisation shared by training and serving."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ponder.core.reasoning import THINK_OPEN

# How a verifier model sees numbers: as written, or every digit run reversed (least significant digit first).
NUMBER_ORDERS = ("as_written", "reversed")
_DIGITS = re.compile(r"\d+")


def reverse_digits(text: str) -> str:
    """Every run of digits written backwards: ``467+914=1381`` -> ``764+419=1831`` (carries become local)."""
    return _DIGITS.sub(lambda m: m.group()[::-1], text)


def number_view(order: str) -> Callable[[str], str]:
    """The text transform of a number order (the one used both to train a verifier and to serve it)."""
    if order not in NUMBER_ORDERS:
        raise ValueError(f"unknown number order {order!r}; valid: {', '.join(NUMBER_ORDERS)}")
    return reverse_digits if order == "reversed" else str


def render_prompt(tokenizer: Any, messages: Sequence[dict]) -> str:
    """The conversation up to the start of the assistant turn, as the policy saw it."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def orm_text(tokenizer: Any, messages: Sequence[dict], completion: str) -> str:
    """Outcome-model input: the rendered prompt followed by the whole assistant completion."""
    return render_prompt(tokenizer, messages) + completion


def prm_text(prompt_text: str, steps: Sequence[str], separator: str = "\n", opener: str = THINK_OPEN) -> str:
    """Process-model input: the rendered prompt, the think opener, then every step followed by the separator."""
    return prompt_text + opener + "".join(step + separator for step in steps)


def prm_features(
    tokenizer: Any, prompt_text: str, steps: Sequence[str], separator: str = "\n", opener: str = THINK_OPEN
) -> tuple[list[int], list[int]]:
    """Token ids of :func:`prm_text` and, per step, the index of the token that ends its separator.

    The PRM's score for step ``i`` is read at ``positions[i]``; it judges the reasoning up to and
    including that step. Offsets come from the fast tokenizer, so any tokenisation of the separator works.
    """
    text = prm_text(prompt_text, steps, separator, opener)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = []
    cursor = len(prompt_text) + len(opener)
    for step in steps:
        cursor += len(step) + len(separator)
        ends.append(cursor - 1)  # the separator's last character
    positions, t = [], 0
    offsets = enc["offset_mapping"]
    for char in ends:
        while t < len(offsets) and offsets[t][1] <= char:
            t += 1
        positions.append(min(t, len(offsets) - 1))
    return list(enc["input_ids"]), positions
