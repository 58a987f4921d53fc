"""The Strategy base: per-request options, metered engine and verifier, budget enforcement, typed results."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ponder.core.errors import InvalidRequestError
from ponder.core.protocols import Engine, Problem, Verifier, is_step_verifier
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.strategies.meter import BudgetExhausted, Meter, MeteredEngine, MeteredVerifier, Spent
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Candidate, Trace

# The temperature a strategy samples its candidates at when the request is greedy (temperature 0, what lm-eval
# and many LangChain apps send): N identical candidates would leave nothing to choose from.
GREEDY_SAMPLING_TEMPERATURE = 0.8


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
    shown: Problem | None = None  # what verifiers see when the prompt holds more (the server's spec turn)

    @property
    def problem(self) -> Problem:
        """What verifiers are shown: the conversation (or the raw prompt text)."""
        if self.shown is not None:
            return self.shown
        return list(self.prompt.messages) if self.prompt.messages is not None else self.prompt.text or ""


@dataclass
class StrategyResult:
    """What a strategy returns: the chosen candidates, best first, what the search cost, and its own figures.

    Each algorithm's subclass adds its figures as fields (with defaults); :meth:`summary` reports them.
    """

    choices: list[Candidate]
    spent: Spent
    trace: Trace
    exhausted: str | None = None  # the budget limit that cut the search short, if one did
    sampling_temperature: float | None = None  # set when a greedy request's candidates were sampled at it
    content_filter: dict[str, Any] | None = None  # what the server's content policy or spec rejected, if one is loaded

    def summary(self) -> dict[str, Any]:
        """Strategy-specific figures for the response's ``ponder`` block: by default every field a subclass adds."""
        common = {f.name for f in fields(StrategyResult)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in common}


R = TypeVar("R", bound=StrategyResult)


@dataclass
class Search(Generic[R]):
    """One request's search: its inputs, the metered engine and verifier, and the typed result it fills in.

    The result exists before the search starts and the search keeps its figures there as it goes, so a budget
    or time cut, which can stop the search at any await, still reports the figures so far.
    """

    request: StrategyRequest
    engine: MeteredEngine
    verifier: MeteredVerifier | None
    budget: Budget
    result: R

    @property
    def trace(self) -> Trace:
        return self.result.trace


class Strategy(Generic[R]):
    """One decoding strategy: its validated options are all it holds, so one object may serve any request.

    A strategy implements :meth:`explore` (the algorithm over a :class:`Search`, filling its typed ``Result``),
    or, when it has no figures of its own, the plainer :meth:`search`.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Options
    Result: ClassVar[type[StrategyResult]] = StrategyResult
    needs_verifier: ClassVar[bool] = False
    needs_step_verifier: ClassVar[bool] = False
    needs_prefix_continuation: ClassVar[bool] = False
    streams_tokens: ClassVar[bool] = False  # True only for `none`: the server streams the engine directly
    # Draws several candidates to choose from: a greedy request's are sampled at GREEDY_SAMPLING_TEMPERATURE.
    samples_candidates: ClassVar[bool] = True
    # Every engine call samples whole answers with the request's own params, so an output constraint
    # (response_format, a forced tool call) holds for every candidate; step searches continue partial text.
    keeps_constraints: ClassVar[bool] = False

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options: Any = options if options is not None else self.Options()

    @classmethod
    def from_request(cls, raw: dict[str, Any] | None) -> Strategy:
        return cls(cls.Options.model_validate(raw or {}))

    def check(self, engine: Engine, verifier: Verifier | None) -> None:
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

    def begin(
        self,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        budget: Budget,
        trace: Trace,
    ) -> Search[R]:
        """A new search of ``request`` on the metered engine and verifier, with this strategy's empty result."""
        result: Any = self.Result([], engine.meter.spent, trace)  # the R of this class
        return Search(request, engine, verifier, budget, result)

    async def run(
        self,
        request: StrategyRequest,
        engine: Engine,
        verifier: Verifier | None,
        budget: Budget,
        trace: Trace | None = None,
        ceiling: Budget | None = None,
    ) -> R:
        """Search within ``budget``; out of budget (samples, tokens or seconds), return the best found so far.

        ``budget`` is what the request asked for (strategies size their search from it); ``ceiling`` holds
        the server's limits, enforced for whatever the budget leaves unset.
        """
        self.check(engine, verifier)
        sampled = self.samples_candidates and request.params.temperature == 0
        if sampled:  # identical greedy candidates would make the search pointless (and vLLM refuses n > 1)
            params = dataclasses.replace(request.params, temperature=GREEDY_SAMPLING_TEMPERATURE)
            request = dataclasses.replace(request, params=params)
        meter = Meter(budget, ceiling or Budget())
        metered = MeteredEngine(engine, meter, request.format.separator)
        metered_verifier = MeteredVerifier(verifier, meter) if verifier is not None else None
        search = self.begin(request, metered, metered_verifier, budget, trace or Trace())
        if sampled:
            search.result.sampling_temperature = GREEDY_SAMPLING_TEMPERATURE
        try:
            async with asyncio.timeout(meter.remaining_seconds()):
                choices = await self.explore(search)
        except BudgetExhausted:
            choices = []
        except TimeoutError:
            meter.exhausted = "max_seconds"
            choices = []
        if meter.exhausted:
            search.trace.emit(
                "budget",
                f"budget exhausted ({meter.exhausted}); returning the best found so far",
                limit=meter.exhausted,
            )
            choices = choices or self.fallback(search.trace.candidates, request.n, search.result)
        # Out of budget before anything came back at all: an empty partial answer, never an error.
        choices = choices or [search.trace.add(Candidate("", 0, "length"), message="")]
        meter.seal()
        return self.finish(search.result, choices, meter.exhausted)

    async def explore(self, search: Search[R]) -> list[Candidate]:
        """The algorithm: spend the engine and verifier, record candidates and figures, return the n best.

        Candidates go on ``search.trace``, figures on ``search.result``; by default it runs :meth:`search`.
        """
        s = search
        return await self.search(s.request, s.engine, s.verifier, s.budget, s.trace)

    async def search(
        self,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        budget: Budget,
        trace: Trace,
    ) -> list[Candidate]:
        """The algorithm of a strategy without figures of its own: record candidates on ``trace``, return the n best."""
        raise NotImplementedError(f"{type(self).__name__} implements neither explore() nor search()")

    def finish(self, result: R, choices: list[Candidate], exhausted: str | None) -> R:
        """The result with its choices; strategies whose figures sum up the whole search complete them here."""
        result.choices, result.exhausted = choices, exhausted
        return result

    def fallback(self, candidates: Sequence[Candidate], n: int, result: R) -> list[Candidate]:
        """What to return when the budget cuts the search short: the best distinct candidates so far."""
        return best_distinct(candidates, n)


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
