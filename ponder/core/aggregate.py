"""The one reduction of a solution's per-step scores to one score: ``min``, ``prod``, ``last`` or ``mean``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

Aggregation = Literal["min", "prod", "last", "mean"]

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "prod": math.prod,
    "last": lambda scores: scores[-1],
    "mean": lambda scores: math.fsum(scores) / len(scores),
}


def check_aggregation(name: str) -> str:
    """``name`` if it is a known aggregation; a ValueError listing the valid ones otherwise."""
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown step aggregation {name!r}; valid: {', '.join(AGGREGATIONS)}")
    return name


def aggregate(scores: Sequence[float], how: str = "min") -> float:
    """One score for a solution from its step scores; no steps at all scores 0.0 (nothing to vouch for)."""
    fn = AGGREGATIONS[check_aggregation(how)]
    return float(fn(list(scores))) if scores else 0.0
