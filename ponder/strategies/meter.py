"""Metering: every sample, token, verifier call and second a strategy spends is counted once, here, and capped."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ponder.core.protocols import Engine, Problem, StepVerifier, Verifier, is_step_verifier, scores_answer
from ponder.core.streams import collect
from ponder.core.types import Budget, Prompt, Sample, SampleDelta, SamplingParams


class CeilingBusy(Exception):
    """The server's token ceiling is held by calls in flight: wait for one to return, then ask again."""


MAX_RESERVE_SECONDS = 1.0  # the most of a time budget kept back from generation for choosing the answer


class BudgetExhausted(Exception):
    """Raised by a meter when the next call would go past the request's budget."""

    def __init__(self, limit: str) -> None:
        super().__init__(f"budget exhausted: {limit}")
        self.limit = limit


@dataclass
class Spent:
    """What a request used; ``samples`` counts finished solutions, ``sequences`` every engine sequence."""

    samples: int = 0
    sequences: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    prompt_tokens_total: int = 0
    cached_tokens: int = 0
    engine_calls: int = 0
    verifier_calls: int = 0
    verifier_items: int = 0
    seconds: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sequences": self.sequences,
            "tokens": self.tokens,
            "engine_calls": self.engine_calls,
            "verifier_calls": self.verifier_calls,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class Meter:
    """The budget of one request and what has been spent against it."""

    budget: Budget
    ceiling: Budget = field(default_factory=Budget)  # the server's limits, for what the budget leaves open
    spent: Spent = field(default_factory=Spent)
    started: float = field(default_factory=time.perf_counter)
    exhausted: str | None = None  # which limit stopped the search, if any
    reserved_samples: int = 0  # admitted by calls still in flight, so concurrent calls cannot overspend
    reserved_tokens: int = 0  # the most tokens the calls in flight may still generate
    _freed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def limit(self, name: str) -> float | None:
        asked = getattr(self.budget, name)
        return asked if asked is not None else getattr(self.ceiling, name)

    def remaining_seconds(self) -> float | None:
        limit = self.limit("max_seconds")
        return None if limit is None else limit - (time.perf_counter() - self.started)

    def generation_seconds(self) -> float | None:
        """Seconds engine calls may still generate: the time budget less a reserve (a tenth of it, at most one
        second) for scoring and choosing among what a cut leaves, so the answer comes within the budget."""
        left, limit = self.remaining_seconds(), self.limit("max_seconds")
        return None if left is None or limit is None else left - min(MAX_RESERVE_SECONDS, limit / 10)

    def cut(self, samples: list[Sample]) -> list[Sample]:
        """An engine call's samples, those its deadline cut short finished ``"length"`` (a partial answer, as a
        token limit leaves one); a cut means the time budget is spent."""
        if not any(s.finish_reason == "abort" for s in samples):
            return samples
        self.exhausted = "max_seconds"
        return [dataclasses.replace(s, finish_reason="length") if s.finish_reason == "abort" else s for s in samples]

    def admit(self, params: SamplingParams, n: int, *, solutions: bool = True) -> tuple[SamplingParams, int]:
        """Clamp a call to what is left of the budget; raise when nothing is left.

        Samples are reserved until the call returns, so they are exact under concurrency. Tokens are
        checked against what finished calls used: calls in flight finish, so a search that runs many
        calls at once can end at most one round over the request's token budget. The server's token
        ceiling is exact: each call reserves the most it may generate, a call that would go past it is
        capped to what is left, and when calls in flight hold all of it, :class:`CeilingBusy` says to
        wait for one to return. A call that draws no solutions (``solutions=False``) is held to the
        token budget only.
        """
        s = self.spent
        seconds = self.generation_seconds()
        if seconds is not None:
            if seconds <= 0:
                self._stop("max_seconds")
            params = dataclasses.replace(params, deadline=time.monotonic() + seconds)
        max_samples, max_tokens = self.limit("max_samples"), self.limit("max_tokens")
        if max_samples is not None and solutions:
            left = max_samples - s.samples - self.reserved_samples
            if left <= 0:
                self._stop("max_samples")
            n = min(n, left)
        if max_tokens is not None:
            left = max_tokens - s.tokens
            if left < n:
                self._stop("max_tokens")
            share = left // n
            if params.token_cap is None or params.token_cap > share:
                params = dataclasses.replace(params, token_cap=share)
        hard = self.ceiling.max_tokens
        if hard is not None:
            room = hard - s.tokens - self.reserved_tokens
            if room < n:
                if self.reserved_tokens:
                    raise CeilingBusy()
                self._stop("max_tokens")
            most = per_sample(params)
            if most is None or most * n > room:
                params = dataclasses.replace(params, token_cap=room // n)
        return params, n

    def reserve(self, params: SamplingParams, n: int, samples: int) -> int:
        """Hold an admitted call's samples and the most tokens it may generate until :meth:`release`."""
        tokens = n * (per_sample(params) or 0)
        self.reserved_samples += samples
        self.reserved_tokens += tokens
        return tokens

    def release(self, tokens: int, samples: int) -> None:
        self.reserved_samples -= samples
        self.reserved_tokens -= tokens
        self._freed.set()

    async def freed(self) -> None:
        """Until a call in flight returns its reservation."""
        self._freed.clear()
        await self._freed.wait()

    def _stop(self, limit: str) -> None:
        self.exhausted = limit
        raise BudgetExhausted(limit)

    def charge(self, samples: Sequence[Sample], finished: int) -> None:
        s = self.spent
        s.engine_calls += 1
        s.sequences += len(samples)
        s.samples += finished
        s.tokens += sum(x.num_tokens for x in samples)
        if samples:
            # The request's own prompt is the shortest any call sends; longer ones carry partial solutions.
            prompt = samples[0].prompt_tokens
            s.prompt_tokens = prompt if not s.prompt_tokens else min(s.prompt_tokens, prompt)
            s.prompt_tokens_total += prompt
            s.cached_tokens += samples[0].cached_tokens

    def seal(self) -> Spent:
        self.spent.seconds = time.perf_counter() - self.started
        return self.spent


class MeteredEngine:
    """The engine as a strategy sees it: the same calls, counted and capped by the request's meter.

    ``generate`` draws whole solutions (each returned sequence is one sample). ``extend`` continues a
    partial solution by one step, stopping at the step separator; a sequence that instead finishes the
    solution counts as a sample, one that stops at the separator does not.
    """

    def __init__(self, engine: Engine, meter: Meter, separator: str = "\n") -> None:
        self._engine = engine
        self.meter = meter
        self.separator = separator
        self.model_id = engine.model_id
        self.capabilities = engine.capabilities
        self._sequences = 0  # sequences asked for so far: where the next call's seeds start

    def _seeded(self, params: SamplingParams, n: int) -> SamplingParams:
        """A seeded request's call with seeds of its own: the request's seed plus the sequences asked for before.

        Engines seed a call's n sequences seed, seed + 1, ... (vLLM; the HF engine seeds the call), so every call
        of a search with the request's seed would draw the same samples again: a second chunk of best-of-N, a
        second wave of DVTS or two subtrees from the same prefix would repeat the first. Offsetting keeps the
        request reproducible and its calls distinct; the first call keeps the request's seed as it is.
        """
        offset, self._sequences = self._sequences, self._sequences + n
        if params.seed is None or offset == 0:
            return params
        return dataclasses.replace(params, seed=params.seed + offset)

    async def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        n: int = 1,
        on_finish: Callable[[int, Sample], None] | None = None,
    ) -> list[Sample]:
        """Whole solutions; ``n`` may come back smaller when the sample budget is nearly spent.

        With ``on_finish`` the samples are streamed from the engine and each is handed to it as soon as it
        finishes (a sample the deadline cuts is not: it comes back in the list only).
        """
        return await self._call(prompt, params, n, step=False, on_finish=on_finish)

    async def extend(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        """One more step from ``prompt.prefix``: generation stops at the separator (kept off the text)."""
        stops = tuple(dict.fromkeys((*params.stop, self.separator)))
        return await self._call(prompt, dataclasses.replace(params, stop=stops), n, step=True)

    async def _admit(self, params: SamplingParams, n: int, solutions: bool = True) -> tuple[SamplingParams, int]:
        while True:
            try:
                return self.meter.admit(params, n, solutions=solutions)
            except CeilingBusy:
                await self.meter.freed()

    async def _call(
        self,
        prompt: Prompt,
        params: SamplingParams,
        n: int,
        *,
        step: bool,
        on_finish: Callable[[int, Sample], None] | None = None,
    ) -> list[Sample]:
        params, n = await self._admit(params, n)
        params = self._seeded(params, n)
        held = self.meter.reserve(params, n, samples=n)
        try:
            if on_finish is None:
                drawn = await self._engine.generate(prompt, params, n)
            else:
                drawn = await collect(self._engine.stream(prompt, params, n), params, n, on_finish)
            samples = self.meter.cut(drawn)
        finally:
            self.meter.release(held, samples=n)
        finished = sum(not is_step_end(x, self.separator) for x in samples) if step else len(samples)
        self.meter.charge(samples, finished=finished)
        return samples

    async def ask(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        """An auxiliary call (the model judging a partial solution): its tokens count, its sequences are no samples."""
        params, n = await self._admit(params, n, solutions=False)
        params = self._seeded(params, n)
        held = self.meter.reserve(params, n, samples=0)
        try:
            samples = self.meter.cut(await self._engine.generate(prompt, params, n))
        finally:
            self.meter.release(held, samples=0)
        shortest = self.meter.spent.prompt_tokens
        self.meter.charge(samples, finished=0)
        # A judgement's prompt is not the request's own: it must not become the reported prompt size.
        self.meter.spent.prompt_tokens = shortest or self.meter.spent.prompt_tokens
        return samples

    def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        raise NotImplementedError("strategies call generate/extend; the server streams their trace")

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        self.meter.spent.engine_calls += 1
        return await self._engine.score(prompt, continuation)

    async def aclose(self) -> None:  # the server owns the engine
        return None


def per_sample(params: SamplingParams) -> int | None:
    """The most tokens one sample of a call may generate (``None``: up to the context)."""
    limits = [x for x in (params.max_tokens, params.token_cap) if x is not None]
    return min(limits) if limits else None


def is_step_end(sample: Sample, separator: str) -> bool:
    """Whether a sample stopped at the step separator rather than finishing its solution."""
    return sample.finish_reason == "stop" and sample.stop_reason == separator


class MeteredVerifier:
    """A verifier whose calls are counted; step scoring is offered only when the verifier has it."""

    def __init__(self, verifier: Verifier, meter: Meter) -> None:
        self._verifier = verifier
        self.meter = meter
        self.name = verifier.name
        self.step_level = is_step_verifier(verifier)
        self.scores_answer = self.step_level and scores_answer(verifier)

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        if not answers:
            return []
        self._count(len(answers))
        return list(await self._verifier.score(problem, answers, reference))

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if not self.step_level:
            raise TypeError(f"verifier {self.name!r} does not score steps")
        if not solutions:
            return []
        self._count(len(solutions))
        steps = cast(StepVerifier, self._verifier)  # it declared step_level
        return [list(s) for s in await steps.score_steps(problem, solutions)]

    def _count(self, items: int) -> None:
        self.meter.spent.verifier_calls += 1
        self.meter.spent.verifier_items += items
