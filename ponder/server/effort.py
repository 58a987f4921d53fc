"""Effort knobs (OpenAI reasoning_effort, Gemini thinking_level / thinking_budget) to a strategy and a budget.

Precedence, highest first: the request's explicit ``budget`` > ``thinking_budget`` > ``reasoning_effort`` or
``thinking_level`` (through the effort policy) > the server's defaults (its ceilings, and the policy's
``max_tokens_per_sample`` for a request without ``max_tokens``). Fields that contradict each other are a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponder.core.errors import InvalidRequestError
from ponder.server.effort_policy import DEFAULT, EffortPolicy, load_policy
from ponder.strategies.thinking import ThinkingBudget

OFF = ("none", "minimal")  # the levels that decode once


@dataclass(frozen=True)
class EffortPlan:
    """What the effort fields resolved to: ``strategy`` is None when no effort field was set."""

    effort: str | None
    strategy: str | None
    max_samples: int | None
    max_tokens: int | None
    verifier: str | None = None
    strategy_options: dict[str, Any] | None = None
    max_tokens_per_sample: int | None = None  # the cap of each sample when the request sets no max_tokens
    thinking: ThinkingBudget | None = None  # each sample's thinking budget (budget forcing), when one is set


def resolve_effort(
    reasoning_effort: str | None,
    thinking_level: str | None,
    thinking_budget: int | None,
    *,
    default_strategy: str,
    policy: EffortPolicy | None = None,
    strategy: str | None = None,
) -> EffortPlan:
    """Map the effort fields to a strategy, a verifier and sample/token limits through the effort ``policy``.

    The bundled policy: ``none``/``minimal`` decode once; ``low``/``medium``/``high`` run ``default_strategy``
    with 4/16/64 samples; ``auto`` routes by estimated difficulty (``compute_optimal``). A Gemini
    ``thinking_budget`` of 0 turns extra compute off, -1 means ``auto``, and N > 0 is each sample's thinking
    budget (over the level's own ``thinking_budget``): a sample that thinks N tokens has its thinking closed and
    answers (budget forcing). ``strategy`` is the one the request named, checked for contradictions.
    """
    policy = policy or load_policy()
    if thinking_level is not None and thinking_budget is not None:
        raise InvalidRequestError("set thinking_level or thinking_budget, not both.", param="thinking_budget")
    effort = reasoning_effort or thinking_level
    explicit = effort
    thinking_tokens = None
    if thinking_budget == 0:
        if effort is not None and effort not in OFF:
            raise InvalidRequestError(
                f"thinking_budget 0 turns extra compute off, but reasoning_effort is '{effort}'; set one of them.",
                param="thinking_budget",
            )
        effort = explicit = "none"
    elif thinking_budget == -1:
        effort = effort or "auto"
    elif thinking_budget is not None:
        effort = effort or "medium"
        thinking_tokens = thinking_budget
    if effort is None:
        return EffortPlan(None, None, None, None, max_tokens_per_sample=policy.max_tokens_per_sample)
    level = policy.levels[effort]  # type: ignore[index]  # the wire models admit only the policy's levels
    name = default_strategy if level.strategy == DEFAULT else level.strategy
    if strategy is not None and explicit is not None and (strategy == "none") != (name == "none"):
        asked = "decodes once" if name == "none" else f"searches ({name})"
        raise InvalidRequestError(
            f"strategy '{strategy}' contradicts the effort asked for, which {asked}; set one of them.",
            param="strategy",
        )
    return EffortPlan(
        effort,
        name,
        level.max_samples,
        level.max_tokens,
        level.verifier,
        level.strategy_options if level.strategy != DEFAULT else None,
        level.max_tokens_per_sample or policy.max_tokens_per_sample,
        thinking_budget_of(thinking_tokens or level.thinking_budget, level.thinking_extensions, policy),
    )


def thinking_budget_of(tokens: int | None, extensions: int, policy: EffortPolicy) -> ThinkingBudget | None:
    """The thinking budget of a sample (None when neither a token limit nor extensions are set)."""
    budget = ThinkingBudget(tokens, extensions, policy.continuation_cue)
    return budget if budget.active else None
