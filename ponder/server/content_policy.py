"""Content policies as a hard filter: violating candidates never win; if all violate, the policy's refusal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ponder.strategies.base import StrategyResult, best_distinct
from ponder.strategies.trace import Candidate

ContentFilter = Callable[[StrategyResult, int], list[Candidate]]


def policy_filter(policies: Sequence[Any]) -> ContentFilter | None:
    """A filter over a strategy's result for the loaded ``PolicyVerifier``s; ``None`` when there are none."""
    if not policies:
        return None

    def complies(candidate: Candidate) -> bool:
        return not any(policy.violations(candidate.text) for policy in policies)

    def apply(result: StrategyResult, n: int) -> list[Candidate]:
        if all(complies(c) for c in result.choices):
            return result.choices
        compliant = [c for c in result.trace.candidates if complies(c)]
        result.trace.emit(
            "policy",
            f"content policy: {len(result.trace.candidates) - len(compliant)} of "
            f"{len(result.trace.candidates)} candidates violate it",
            compliant=len(compliant),
        )
        if compliant:
            return best_distinct(compliant, n)
        refusal = Candidate(policies[0].refusal, 0, "content_filter", answer=None)  # type: ignore[arg-type]
        return [refusal]

    return apply
