"""Scoring candidates with the request's verifier: whole answers, or steps aggregated into one score."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from ponder.strategies.base import StrategyRequest
from ponder.strategies.meter import MeteredVerifier
from ponder.strategies.trace import Candidate

Aggregation = Literal["min", "prod", "last", "mean"]

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "prod": math.prod,
    "last": lambda s: s[-1],
    "mean": lambda s: sum(s) / len(s),
}


def aggregate(step_scores: Sequence[float], how: str = "min") -> float:
    """One score from a solution's step scores; a solution without steps scores 0."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[how](step_scores) if step_scores else 0.0


async def score_candidates(
    verifier: MeteredVerifier | None,
    request: StrategyRequest,
    candidates: Sequence[Candidate],
    aggregation: str = "min",
) -> None:
    """Set ``score`` (and ``step_scores`` for a step verifier) on each candidate, in one batched call."""
    if verifier is None or not candidates:
        return
    if verifier.is_step:
        steps = [request.format.steps(c.text) for c in candidates]
        scored = await verifier.score_steps(request.problem, steps)
        for c, step_scores in zip(candidates, scored, strict=True):
            c.step_scores = step_scores
            c.score = aggregate(step_scores, aggregation)
        return
    scores = await verifier.score(request.problem, [c.text for c in candidates], request.reference)
    for c, score in zip(candidates, scores, strict=True):
        c.score = score
