"""Votes over extracted answers: plain majority or weighted by a score per candidate."""

from __future__ import annotations

from collections.abc import Sequence


def tally(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Total weight per distinct answer (``None`` answers cast no vote), most-voted first."""
    totals: dict[str, float] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        totals[answer] = totals.get(answer, 0.0) + (1.0 if weights is None else weights[i])
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def is_decisive(votes: dict[str, float], remaining: float) -> bool:
    """Whether the leader can no longer be caught even if every remaining vote went to the runner-up."""
    ranked = sorted(votes.values(), reverse=True)
    if not ranked:
        return False
    runner_up = ranked[1] if len(ranked) > 1 else 0.0
    return ranked[0] > runner_up + remaining
