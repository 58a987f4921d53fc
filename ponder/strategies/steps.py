"""How a completion splits into reasoning steps and a final answer, and how partial solutions are continued."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN, split_reasoning

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


@dataclass(frozen=True)
class StepFormat:
    """The shape of a thinking model's output: ``<think>step SEP step SEP </think>answer``."""

    separator: str = "\n"
    think_open: str = THINK_OPEN
    think_close: str = THINK_CLOSE
    # The model is known to think (its ponder.json declares think tags): text before a lone close tag is reasoning.
    thinks: bool = False

    def split(self, text: str) -> tuple[list[str], str | None]:
        """Steps of the reasoning and the visible answer (``None`` while the think block is open)."""
        body = text.lstrip()
        if body.startswith(self.think_open):
            body = body[len(self.think_open) :]
        reasoning, closed, answer = body.partition(self.think_close)
        steps = [s.strip() for s in reasoning.split(self.separator) if s.strip()]
        return steps, (answer.strip() if closed else None)

    def steps(self, text: str) -> list[str]:
        return self.split(text)[0]

    def scored_steps(self, text: str, with_answer: bool = False) -> list[str]:
        """What a step verifier scores: the steps, and with ``with_answer`` a finished solution's answer as one more
        item, ``think_close + answer`` (a verifier that reads it can tell a solution that stops early)."""
        steps, answer = self.split(text)
        return [*steps, self.think_close + answer] if with_answer and answer is not None else steps

    def prefix(self, steps: list[str]) -> str:
        """The partial assistant turn that continues after ``steps``."""
        return self.think_open + "".join(s + self.separator for s in steps)

    def is_final(self, piece: str) -> bool:
        """Whether a generated piece closed the reasoning (the solution is complete)."""
        return self.think_close in piece


def visible_answer(text: str) -> str:
    """What the user sees: the content after the think block (the whole text when there is none)."""
    split = split_reasoning(text, implicit_open=True)  # a lone </think> ends reasoning, as verifiers read it
    return split.content.strip()


EXTRACTORS = ("content", "last_number", "boxed")


def extract_answer(text: str, how: str = "content") -> str | None:
    """The answer a vote is cast for: the visible content, its last number, or its last ``\\boxed{}``."""
    content = visible_answer(text)
    if how == "content":
        return " ".join(content.split()) or None
    if how == "last_number":
        numbers = _NUMBER.findall(content)
        return numbers[-1].replace(",", "") if numbers else None
    if how == "boxed":
        boxed = _BOXED.findall(content)
        return boxed[-1].strip() if boxed else None
    raise ValueError(f"unknown answer extraction {how!r}; valid: {', '.join(EXTRACTORS)}")
