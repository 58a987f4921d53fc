"""Effort knobs (OpenAI reasoning_effort, Gemini thinking_level / thinking_budget) to a strategy and a budget."""

from __future__ import annotations

from dataclasses import dataclass

# Samples a request may spend per effort level; the server's --max-samples still caps them.
EFFORT_SAMPLES = {"none": 1, "minimal": 1, "low": 4, "medium": 16, "high": 64}


@dataclass(frozen=True)
class EffortPlan:
    """What an effort knob resolved to: ``strategy`` is None when the request named one itself."""

    effort: str | None
    strategy: str | None
    max_samples: int | None
    max_tokens: int | None


def resolve_effort(
    reasoning_effort: str | None,
    thinking_level: str | None,
    thinking_budget: int | None,
    *,
    default_strategy: str,
) -> EffortPlan:
    """Map the effort fields to a strategy and sample/token limits.

    ``none``/``minimal`` decode once; ``low``/``medium``/``high`` run ``default_strategy`` with 4/16/64
    samples; ``auto`` routes by estimated difficulty (``compute_optimal``). A Gemini ``thinking_budget``
    of 0 turns extra compute off, -1 means ``auto``, and N > 0 caps generated tokens at N.
    """
    effort = reasoning_effort or thinking_level
    max_tokens = None
    if thinking_budget is not None:
        if thinking_budget == 0:
            effort = "none"
        elif thinking_budget == -1:
            effort = effort or "auto"
        else:
            effort = effort or "medium"
            max_tokens = thinking_budget
    if effort is None:
        return EffortPlan(None, None, None, max_tokens)
    if effort == "auto":
        return EffortPlan(effort, "compute_optimal", None, max_tokens)
    samples = EFFORT_SAMPLES[effort]
    strategy = "none" if samples == 1 else default_strategy
    return EffortPlan(effort, strategy, samples, max_tokens)
