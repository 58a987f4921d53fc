"""Thinking budgets (budget forcing, s1): a sample out of thinking tokens gets ``</think>`` and answers; early stops
can be extended with a cue.

:class:`BudgetForcingEngine` wraps an engine for one request, so plain decoding and every strategy's sampling get
the same behaviour from the same calls. Each sample thinks with the close tag as a stop string and at most the
thinking tokens left; when its thinking runs out, the partial thinking plus the close tag becomes a partial
assistant turn the same sample continues from (prefix continuation), so the model answers. When the model closes
its thinking early and extensions are left, the close tag is replaced by the cue (``"Wait"``) and it thinks on.
Every generated token of every phase counts in the sample's ``num_tokens``; the inserted tags and cues are prompt,
not generated tokens. An answer ends where the model writes a think tag again (a small model whose thought was
closed mid-step may try to close it a second time), so no tag reaches the visible content.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ponder.core.protocols import Engine
from ponder.core.types import EngineCapabilities, Prompt, Sample, SampleDelta, SamplingParams, TokenLogprob
from ponder.strategies.steps import StepFormat

DEFAULT_CUE = "Wait"  # s1's continuation cue (Muennighoff et al., 2025)


@dataclass(frozen=True)
class ThinkingBudget:
    """How much each sample may think: ``tokens`` thinking tokens at most (None: no limit), and how many times
    an early end of thinking is replaced by ``cue`` to make it think longer."""

    tokens: int | None = None
    extensions: int = 0
    cue: str = DEFAULT_CUE

    @property
    def active(self) -> bool:
        return self.tokens is not None or self.extensions > 0

    def public(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "extensions": self.extensions, "cue": self.cue}


def budget_forcing(
    engine: Engine, budget: ThinkingBudget | None, fmt: StepFormat, count_tokens: Callable[[str], int] | None = None
) -> Engine:
    """``engine`` with thinking budgets enforced on every sample (itself when ``budget`` asks for nothing)."""
    if budget is None or not budget.active:
        return engine
    return BudgetForcingEngine(engine, budget, fmt, count_tokens)  # type: ignore[return-value]


def token_counter(engine: Any) -> Callable[[str], int] | None:
    """Counts tokens with the engine's tokenizer (looking through wrappers), or None when it has none."""
    for _ in range(4):
        tokenizer = getattr(engine, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "encode"):
            return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
        engine = getattr(engine, "_engine", None)
        if engine is None:
            return None
    return None


def open_thought(text: str, fmt: StepFormat) -> bool:
    """Whether ``text`` (a prompt's partial turn) leaves a think block open."""
    return text.rfind(fmt.think_open) > text.rfind(fmt.think_close) if fmt.think_open in text else False


def _total(params: SamplingParams) -> int | None:
    limits = [x for x in (params.max_tokens, params.token_cap) if x is not None]
    return min(limits) if limits else None


def _less(value: int | None, used: int) -> int | None:
    return None if value is None else value - used


@dataclass
class _Run:
    """One sample across its phases: what it wrote (with the inserted tags and cues), and what it spent."""

    prompt: Prompt
    params: SamplingParams
    budget: ThinkingBudget
    fmt: StepFormat
    thinking: int = 0  # thinking tokens used, the prompt's open thinking included
    thinking_open: bool = False  # inside the think block (the prompt opened it, or the sample did)
    text: str = ""
    tokens: int = 0
    extended: int = 0
    forced: bool = False
    prompt_tokens: int = 0
    cached_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None
    cumulative: float | None = None
    answering: bool = False  # past the think block: the rest is generated with the request's own params
    last: Sample | None = None
    _think_cap: bool = field(default=False, repr=False)  # the current call is capped by the thinking budget

    @classmethod
    def start(cls, prompt: Prompt, params: SamplingParams, budget: ThinkingBudget, fmt: StepFormat, count) -> _Run:
        partial = prompt.prefix if prompt.text is None else prompt.text
        run = cls(prompt, params, budget, fmt)
        if open_thought(partial, fmt):
            run.thinking_open = True
            thought = partial[partial.rfind(fmt.think_open) + len(fmt.think_open) :]
            run.thinking = count(thought) if count is not None and thought else 0
            run.extended = thought.count(budget.cue) if budget.extensions else 0
        return run

    def call(self) -> tuple[Prompt, SamplingParams]:
        """The prompt and params of this sample's next engine call."""
        p = self.params
        prompt = self.prompt.continued(self.text) if self.text else self.prompt
        max_tokens, cap = _less(p.max_tokens, self.tokens), _less(p.token_cap, self.tokens)
        self._think_cap = False
        # Thinking stops at the close tag so the budget can act on it. An answer stops at either tag: a model
        # that closes a thought already closed (one closed for it, mid-step) or opens another is still thinking,
        # and the tag must not reach the answer, where a reasoning parser would show it as content.
        tags = (self.fmt.think_open, self.fmt.think_close) if self.answering else (self.fmt.think_close,)
        stop = (*p.stop, *(t for t in tags if t not in p.stop))
        if not self.answering and self.budget.tokens is not None:
            left = max(self.budget.tokens - self.thinking, 0)
            total = _total(dataclasses.replace(p, max_tokens=max_tokens, token_cap=cap))
            if total is None or left < total:
                cap, self._think_cap = left, True
        return prompt, dataclasses.replace(p, stop=stop, max_tokens=max_tokens, token_cap=cap)

    def absorb(self, sample: Sample) -> str | None:
        """Take a call's sample; the text to insert before the next call, or None when the sample is finished."""
        thinking_call = not self.answering
        if self.last is None:
            self.prompt_tokens, self.cached_tokens = sample.prompt_tokens, sample.cached_tokens
        self.text += sample.text
        self.tokens += sample.num_tokens
        if sample.logprobs is not None:
            self.logprobs = (self.logprobs or []) + list(sample.logprobs)
        if sample.cumulative_logprob is not None:
            self.cumulative = (self.cumulative or 0.0) + sample.cumulative_logprob
        self.last = sample
        if self.answering:
            return None
        opened = self.thinking_open or self.text.lstrip().startswith(self.fmt.think_open)
        if thinking_call and opened:
            self.thinking += sample.num_tokens
        left = _total(self.params)
        room = None if left is None else left - self.tokens
        # The model ended its thinking: it hit the close tag, or stopped with its thought open (an engine that
        # does not say which stop string matched reports none; an end of sequence inside a thought ends it too).
        ended = sample.stop_reason == self.fmt.think_close or (sample.stop_reason is None and opened)
        closed = sample.finish_reason == "stop" and ended and self.fmt.think_close not in self.params.stop
        if closed:  # the model ended its thinking (the stop string is off the text: put it back, or a cue)
            thinking_left = None if self.budget.tokens is None else self.budget.tokens - self.thinking
            more = thinking_left is None or thinking_left > 0
            if self.extended < self.budget.extensions and more and (room is None or room > 0):
                self.extended += 1
                return self.insert(self.budget.cue)
            self.answering = True
            insert = self.insert(self.fmt.think_close)
            return insert if room is None or room > 0 else self._done()
        if sample.finish_reason == "length" and self._think_cap and (room is None or room > 0):
            self.answering = True  # out of thinking tokens: close the thought (when there is one) and answer
            if opened:
                self.forced = True
                return self.insert(self.fmt.think_close)
            return ""
        return None

    def thinking_cap_spent(self) -> bool:
        """Whether the last :meth:`call` has no thinking tokens left to generate."""
        return self._think_cap and self.budget.tokens is not None and self.thinking >= self.budget.tokens

    def insert(self, text: str) -> str:
        self.text += text
        if self.logprobs is not None:
            self.logprobs.append(TokenLogprob(text, 0.0))  # inserted, not sampled: keeps tokens and text aligned
        return text

    def _done(self) -> None:
        self.last = dataclasses.replace(self.last, finish_reason="length", stop_reason=None) if self.last else None
        return None

    def sample(self) -> Sample:
        last = self.last or Sample("", 0, "length")
        return Sample(
            text=self.text,
            num_tokens=self.tokens,
            finish_reason=last.finish_reason,
            prompt_tokens=self.prompt_tokens,
            cached_tokens=self.cached_tokens,
            logprobs=self.logprobs,
            cumulative_logprob=self.cumulative,
            stop_reason=last.stop_reason,
        )


class BudgetForcingEngine:
    """An ``Engine`` whose samples keep to a thinking budget (see the module docstring); one per request."""

    def __init__(
        self,
        engine: Engine,
        budget: ThinkingBudget,
        fmt: StepFormat | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self._engine = engine
        self.budget = budget
        self.fmt = fmt or StepFormat()
        self._count = count_tokens
        self.forced = 0  # samples whose thinking was closed for them
        self.extended = 0  # cues inserted

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def capabilities(self) -> EngineCapabilities:
        return self._engine.capabilities

    def num_unfinished_requests(self) -> int:
        return self._engine.num_unfinished_requests()

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        return await self._engine.score(prompt, continuation)

    async def aclose(self) -> None:  # the server owns the engine
        return None

    def _runs(self, prompt: Prompt, params: SamplingParams, n: int) -> list[_Run]:
        """``n`` fresh samples; the first call of each is the same (one engine call draws them all)."""
        runs = [_Run.start(prompt, params, self.budget, self.fmt, self._count) for _ in range(n)]
        for run in runs:
            run.call()  # records whether that call is capped by the thinking budget
            if run.thinking_cap_spent():  # the prompt's own thinking used it all: close it at once
                run.answering, run.forced = True, run.thinking_open
                if run.thinking_open:
                    run.insert(self.fmt.think_close)
        return runs

    def _tally(self, run: _Run) -> None:
        self.forced += run.forced
        self.extended += run.extended

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        if params.structured is not None:  # constrained from its first token, the model answers without thinking
            return await self._engine.generate(prompt, params, n)
        runs = self._runs(prompt, params, n)
        if runs and runs[0].text:  # no thinking left: each sample answers from the closed thought
            return list(await asyncio.gather(*(self._follow(run) for run in runs)))
        call_prompt, call_params = runs[0].call()
        samples = await self._engine.generate(call_prompt, call_params, n)
        return list(await asyncio.gather(*(self._follow(run, s) for run, s in zip(runs, samples, strict=False))))

    async def _follow(self, run: _Run, sample: Sample | None = None) -> Sample:
        """The rest of one sample, call after call, once ``sample`` (its first call's, if made) is absorbed."""
        while sample is None or run.absorb(sample) is not None:
            call_prompt, call_params = run.call()
            if run.thinking_cap_spent():  # a cue used the last thinking tokens: answer now
                run.answering = True
                run.insert(self.fmt.think_close)
                call_prompt, call_params = run.call()
            (sample,) = await self._engine.generate(call_prompt, call_params, 1)
        self._tally(run)
        return run.sample()

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        """Deltas of ``n`` samples. A sample that goes on sends the inserted text (the close tag, or the cue) as a
        delta, then its next call's deltas; it finishes once, at its very end."""
        if params.structured is not None:
            async for delta in self._engine.stream(prompt, params, n):
                yield delta
            return
        merger = _StreamMerger(self)
        runs = self._runs(prompt, params, n)
        if runs and runs[0].text:  # no thinking left: each sample closes its thought and answers
            for index, run in enumerate(runs):
                merger.queue.put_nowait(SampleDelta(index, run.text))
                merger.follow(run, index)
        else:
            call_prompt, call_params = runs[0].call()
            merger.start(self._engine.stream(call_prompt, call_params, n), dict(enumerate(runs)), first=True)
        deltas = merger.deltas()
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()  # cancels the calls in flight, which aborts their engine requests


class _StreamMerger:
    """The deltas of a sample's successive engine streams, and of the samples of one call, as one stream."""

    def __init__(self, owner: BudgetForcingEngine) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[SampleDelta | BaseException | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []

    def start(self, source: AsyncIterator[SampleDelta], runs: dict[int, _Run], *, first: bool, index: int = 0) -> None:
        which = {i: (run, i if first else index) for i, run in runs.items()}
        self.tasks.append(asyncio.create_task(self._pump(source, which, first)))

    def follow(self, run: _Run, index: int) -> None:
        """Sample ``index`` goes on from what it has written: its next engine stream."""
        call_prompt, call_params = run.call()
        if run.thinking_cap_spent():  # a cue used the last thinking tokens: answer now
            run.answering = True
            self.queue.put_nowait(SampleDelta(index, run.insert(self.owner.fmt.think_close)))
            call_prompt, call_params = run.call()
        self.start(self.owner._engine.stream(call_prompt, call_params, 1), {0: run}, first=False, index=index)

    async def _pump(self, source: AsyncIterator[SampleDelta], which: dict[int, tuple[_Run, int]], first: bool) -> None:
        parts: dict[int, list] = {}  # text, tokens and prompt tokens of each sample's current call
        try:
            async for delta in source:
                run, index = which[delta.index]
                part = parts.setdefault(delta.index, ["", 0, delta.prompt_tokens])
                part[0], part[1] = part[0] + delta.text, part[1] + delta.num_tokens
                # A continuation's longer prompt is not the request's: only the first call reports its size.
                out = dataclasses.replace(delta, index=index, prompt_tokens=delta.prompt_tokens if first else 0)
                if delta.finish_reason is None:
                    await self.queue.put(out)
                    continue
                text, tokens, prompt_tokens = parts.pop(delta.index)
                done = Sample(text, tokens, delta.finish_reason, prompt_tokens, stop_reason=delta.stop_reason)
                insert = run.absorb(done)
                if insert is None:
                    self.owner._tally(run)
                    last = run.last or done
                    await self.queue.put(
                        dataclasses.replace(out, finish_reason=last.finish_reason, stop_reason=last.stop_reason)
                    )
                    continue
                await self.queue.put(
                    dataclasses.replace(out, text=out.text + insert, finish_reason=None, stop_reason=None)
                )
                self.follow(run, index)
        except Exception as exc:  # handed to the consumer, which raises it
            await self.queue.put(exc)
        finally:
            await source.aclose()  # type: ignore[attr-defined]  # aborts the engine's request
            await self.queue.put(None)

    async def deltas(self) -> AsyncGenerator[SampleDelta, None]:
        try:
            finished = 0
            while finished < len(self.tasks):
                item = await self.queue.get()
                if item is None:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
