"""Scoring candidates with the request's verifier: whole answers, or steps aggregated into one score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from ponder.core.aggregate import Aggregation, aggregate
from ponder.strategies.base import StrategyRequest
from ponder.strategies.meter import MeteredVerifier
from ponder.strategies.trace import Candidate

__all__ = ["Aggregation", "aggregate", "confident", "score_candidates", "stop_score_field"]


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
        steps = [request.format.scored_steps(c.text, verifier.scores_answer) for c in candidates]
        scored = await verifier.score_steps(request.problem, steps)
        for c, step_scores in zip(candidates, scored, strict=True):
            c.step_scores = step_scores
            c.score = aggregate(step_scores, aggregation)
        return
    scores = await verifier.score(request.problem, [c.text for c in candidates], request.reference)
    for c, score in zip(candidates, scores, strict=True):
        c.score = score


def stop_score_field() -> Any:
    """The ``stop_score`` option of the searches that can stop once their verifier is sure (adaptive sampling)."""
    return Field(
        None,
        description="Adaptive sampling: start no further chunk of the search once a finished candidate scores at "
        "least this, on the verifier's own scale (a PRM's aggregated step probability, 0-1). Easy prompts stop "
        "early, hard ones spend the whole budget; candidates found before (a compute_optimal probe) count. "
        "Default: spend it all.",
    )


def confident(candidates: Sequence[Candidate], bar: float | None) -> Candidate | None:
    """The best finished candidate when it scores at least ``bar`` (None when none does, or no bar is set)."""
    if bar is None:
        return None
    finished = [c for c in candidates if c.score is not None and c.finish_reason == "stop"]
    best = max(finished, key=lambda c: c.score, default=None)  # type: ignore[arg-type, return-value]
    return best if best is not None and best.score >= bar else None
