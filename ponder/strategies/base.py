"""The Strategy base: per-request options, metered engine and verifier, budget enforcement, typed results."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import is_step_verifier
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.strategies.meter import BudgetExhausted, Meter, MeteredEngine, MeteredVerifier, Spent
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Candidate, Trace


class Options(BaseModel):
    """Base of every strategy's options: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class StrategyRequest:
    """Per-request inputs of a search: what to answer and how the answers look."""

    prompt: Prompt
    params: SamplingParams
    n: int = 1
    format: StepFormat = field(default_factory=StepFormat)
    reference: str | None = None  # the known answer, in evaluation only

    @property
    def problem(self) -> Any:
        """What verifiers are shown: the conversation (or the raw prompt text)."""
        return list(self.prompt.messages) if self.prompt.messages is not None else self.prompt.text


@dataclass
class StrategyResult:
    """What a strategy returns: the chosen candidates, best first, and what the search cost."""

    choices: list[Candidate]
    spent: Spent
    trace: Trace
    exhausted: str | None = None  # the budget limit that cut the search short, if one did

    def summary(self) -> dict[str, Any]:
        """Strategy-specific figures for the response's ``ponder`` block; subclasses add theirs."""
        return {}


class Strategy(ABC):
    """One decoding strategy. Built per request from validated options; holds no state between requests."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Options
    needs_verifier: ClassVar[bool] = False
    needs_step_verifier: ClassVar[bool] = False
    needs_prefix_continuation: ClassVar[bool] = False
    streams_tokens: ClassVar[bool] = False  # True only for `none`: the server streams the engine directly

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_request(cls, raw: dict[str, Any] | None) -> Strategy:
        return cls(cls.Options.model_validate(raw or {}))

    def check(self, engine: Any, verifier: Any) -> None:
        """Refuse, before any work starts, a request this strategy cannot serve with this engine and verifier."""
        if self.needs_step_verifier and not is_step_verifier(verifier):
            got = f"'{verifier.name}' scores whole answers only" if verifier is not None else "no verifier is loaded"
            raise InvalidRequestError(f"Strategy '{self.name}' needs a step verifier (a PRM); {got}.", param="verifier")
        if self.needs_verifier and verifier is None:
            raise InvalidRequestError(f"Strategy '{self.name}' needs a verifier; none is loaded.", param="verifier")
        if self.needs_prefix_continuation and not engine.capabilities.prefix_continuation:
            raise InvalidRequestError(
                f"Strategy '{self.name}' continues partial solutions; this engine cannot.", param="strategy"
            )

    async def run(
        self,
        request: StrategyRequest,
        engine: Any,
        verifier: Any,
        budget: Budget,
        trace: Trace | None = None,
        ceiling: Budget | None = None,
    ) -> StrategyResult:
        """Search within ``budget``; out of budget (samples, tokens or seconds), return the best found so far.

        ``budget`` is what the request asked for (strategies size their search from it); ``ceiling`` holds
        the server's limits, enforced for whatever the budget leaves unset.
        """
        self.check(engine, verifier)
        meter = Meter(budget, ceiling or Budget())
        trace = trace or Trace()
        metered_engine = MeteredEngine(engine, meter, request.format.separator)
        metered_verifier = MeteredVerifier(verifier, meter) if verifier is not None else None
        try:
            async with asyncio.timeout(meter.remaining_seconds()):
                choices = await self.search(request, metered_engine, metered_verifier, budget, trace)
        except BudgetExhausted:
            choices = []
        except TimeoutError:
            meter.exhausted = "max_seconds"
            choices = []
        if meter.exhausted:
            trace.emit(
                "budget",
                f"budget exhausted ({meter.exhausted}); returning the best found so far",
                limit=meter.exhausted,
            )
            choices = choices or self.fallback(trace.candidates, request.n)
        if not choices:
            raise InvalidRequestError(
                f"The budget ran out ({meter.exhausted}) before any answer was complete; raise it.", param="budget"
            )
        return self.result(choices, meter.seal(), trace, meter.exhausted)

    def result(self, choices: list[Candidate], spent: Spent, trace: Trace, exhausted: str | None) -> StrategyResult:
        """Build this strategy's typed result; strategies with extra figures override it."""
        return StrategyResult(choices, spent, trace, exhausted)

    def fallback(self, candidates: Sequence[Candidate], n: int) -> list[Candidate]:
        """What to return when the budget cuts the search short: the best distinct candidates so far."""
        return best_distinct(candidates, n)

    @abstractmethod
    async def search(
        self,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        budget: Budget,
        trace: Trace,
    ) -> list[Candidate]:
        """The algorithm: spend the engine and verifier, record candidates on ``trace``, return the n best."""


async def gather(*awaitables: Any) -> list[Any]:
    """Run concurrently; a branch that runs out of budget yields ``None`` while the admitted ones finish.

    Any other failure cancels the rest and is raised as itself, not as an ExceptionGroup. Prefer it to
    ``asyncio.gather``, which leaves siblings running when one fails.
    """

    async def guarded(awaitable: Any) -> Any:
        try:
            return await awaitable
        except BudgetExhausted:
            return None

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(guarded(a)) for a in awaitables]
    except BaseExceptionGroup as failed:
        raise next(iter(_leaves(failed))) from None
    return [t.result() for t in tasks]


def _leaves(group: BaseExceptionGroup):
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def rank_key(c: Candidate) -> tuple[float, float, float]:
    """Higher is better: finished before truncated, then score, then sequence logprob."""
    return (
        1.0 if c.finish_reason == "stop" else 0.0,
        c.score if c.score is not None else float("-inf"),
        c.logprob if c.logprob is not None else float("-inf"),
    )


def best_distinct(candidates: Sequence[Candidate], n: int, key=rank_key) -> list[Candidate]:
    """The ``n`` best candidates with distinct answers; repeats fill in when there are fewer distinct ones."""
    ranked = sorted(candidates, key=key, reverse=True)
    chosen: list[Candidate] = []
    seen: set[str | None] = set()
    for c in ranked:
        if c.answer not in seen:
            seen.add(c.answer)
            chosen.append(c)
    chosen += [c for c in ranked if c not in chosen]
    return chosen[:n]
