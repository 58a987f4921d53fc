"""Scoring candidates with the request's verifier: whole answers, or steps aggregated into one score."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.aggregate import Aggregation, aggregate
from ponder.strategies.base import StrategyRequest
from ponder.strategies.meter import MeteredVerifier
from ponder.strategies.trace import Candidate

__all__ = ["Aggregation", "aggregate", "score_candidates"]


async def score_candidates(
    verifier: MeteredVerifier | None,
    request: StrategyRequest,
    candidates: Sequence[Candidate],
    aggregation: str = "min",
) -> None:
    """Set ``score`` (and ``step_scores`` for a step verifier) on each candidate, in one batched call."""
    if verifier is None or not candidates:
        return
    if verifier.step_level:
        steps = [request.format.steps(c.text) for c in candidates]
        scored = await verifier.score_steps(request.problem, steps)
        for c, step_scores in zip(candidates, scored, strict=True):
            c.step_scores = step_scores
            c.score = aggregate(step_scores, aggregation)
        return
    scores = await verifier.score(request.problem, [c.text for c in candidates], request.reference)
    for c, score in zip(candidates, scores, strict=True):
        c.score = score
