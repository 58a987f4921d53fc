"""A rule-based math verifier (math-verify): exact with a reference answer, consensus and form without one."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence
from typing import Any

from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, split_completion

_BOXED = re.compile(r"\\boxed\s*\{")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")
TIMEOUT_SECONDS = 2  # math-verify's sympy work can blow up on adversarial input


def _timeout() -> int | None:
    """math-verify's timeouts use SIGALRM, which only the main thread may set."""
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    if not text.strip():
        return []
    return parse(text, parsing_timeout=_timeout())


def _last_boxed(text: str) -> str | None:
    """The last ``\\boxed{...}`` of ``text`` with balanced braces, or None."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[match.start() : i]
    return None


def extract_answer(text: str, *, fallback: bool = True, think_tags: Sequence[str] = THINK_TAGS) -> list[Any]:
    """math-verify's parse of the visible answer (after the think block).

    With ``fallback``, an answer with no parsable visible content is read from the whole completion instead:
    its last ``\\boxed{}``, else its last number (a reasoning that was cut off before it answered).
    """
    _, content, _ = split_completion(text, think_tags)
    parsed = _parse(content)
    if parsed or not fallback:
        return parsed
    boxed = _last_boxed(text)
    if boxed:
        parsed = _parse(boxed)
        if parsed:
            return parsed
    numbers = _NUMBER.findall(text)
    return _parse(numbers[-1]) if numbers else []


def equivalent(gold: list[Any], answer: list[Any]) -> bool:
    """Whether two parsed answers are mathematically equal (math-verify's ``verify``)."""
    from math_verify import verify

    if not gold or not answer:
        return False
    return bool(verify(gold, answer, timeout_seconds=_timeout()))


class MathRule:
    """Scores math answers without a model.

    With a ``reference``: 1.0 when the extracted answer (:func:`extract_answer`, with fallback) equals the
    reference under math-verify, else 0.0.

    Without one (serving), from the visible answers of the batch alone::

        score = 0.25 * closed + 0.25 * parsable + 0.5 * agreement

    ``closed``: the think block was closed (or never opened); ``parsable``: the visible content holds a final
    answer math-verify can parse; ``agreement``: the fraction of the batch's answers (this one included) that
    are equal to it, 0 when it has none. A single well-formed answer therefore scores 1.0.
    """

    step_level = False

    kind = "math_rule"
    source = None

    def __init__(self, name: str = "math_rule", *, think_tags: Sequence[str] = THINK_TAGS) -> None:
        self.name = name
        self.think_tags = tuple(think_tags)

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        if reference is not None:
            gold = _parse(reference)
            if not gold:
                gold = _parse(f"${reference}$")
            scores = []
            for answer in answers:
                scores.append(1.0 if equivalent(gold, extract_answer(answer, think_tags=self.think_tags)) else 0.0)
                await asyncio.sleep(0)  # parsing is CPU work on the event loop: let other requests run between
            return scores
        return await self._consensus(answers)

    async def _consensus(self, answers: Sequence[str]) -> list[float]:
        closed, parsed = [], []
        for answer in answers:
            closed.append(split_completion(answer, self.think_tags)[2])
            parsed.append(extract_answer(answer, fallback=False, think_tags=self.think_tags))
            await asyncio.sleep(0)
        groups = self._groups(parsed)
        n = len(answers)
        return [
            0.25 * float(closed[i]) + 0.25 * float(bool(parsed[i])) + 0.5 * (groups[i] / n if parsed[i] else 0.0)
            for i in range(n)
        ]

    @staticmethod
    def _groups(parsed: list[list[Any]]) -> list[int]:
        """For each answer, how many answers of the batch are equal to it (itself included)."""
        keys = [str(p[-1]) if p else None for p in parsed]  # identical strings need no sympy comparison
        reps: dict[str, list[Any]] = {}
        for key, p in zip(keys, parsed, strict=True):
            if key is not None:
                reps.setdefault(key, p)
        counts = {key: keys.count(key) for key in reps}
        sizes = {}
        for key, rep in reps.items():
            sizes[key] = sum(counts[other] for other, o_rep in reps.items() if other == key or equivalent(rep, o_rep))
        return [sizes[key] if key is not None else 0 for key in keys]
