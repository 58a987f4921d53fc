"""What the chat and completion services share: the request context, admission, accounting and the SSE frame."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ponder.core.errors import InvalidRequestError, NotFoundError, OverloadedError, PonderError, PromptTooLongError
from ponder.core.protocols import Engine
from ponder.core.types import Prompt, SampleDelta, SamplingParams
from ponder.server.content_policy import ContentFilter
from ponder.server.convert import Thinking, usage_info
from ponder.server.errors import error_from_exception, sse_error_event
from ponder.server.metrics import Metrics
from ponder.server.protocol import PonderFields, UsageInfo, new_id, now
from ponder.server.settings import ServerSettings
from ponder.server.sse import DONE, sse
from ponder.server.strategy_serving import StrategyPlan, StrategyPlanner, StrategyRunner, run_with_progress
from ponder.server.structured import OutputSpec
from ponder.strategies.base import StrategyResult
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Trace

if TYPE_CHECKING:
    from ponder.verifiers.registry import VerifierSet

CLIENT_CLOSED = 499  # nginx's status for a request the client gave up on


@dataclass
class RequestContext:
    """A validated request around its strategy plan; passed down, never stored on the service."""

    route: str
    plan: StrategyPlan
    params: SamplingParams
    n: int
    top_k: int  # top logprobs per token (0 without logprobs)
    include_usage: bool  # stream_options.include_usage: a usage chunk before [DONE]
    continuous_usage: bool  # stream_options.continuous_usage_stats: every chunk carries the usage so far
    fingerprint: str | None = None  # the server's system_fingerprint, on every response and chunk
    started: float = field(default_factory=time.perf_counter)
    conversation: str | None = None  # the hash a chat answer's thought signature binds to (signatures.py)
    output: OutputSpec = field(default_factory=OutputSpec)  # response_format and tools: the answers' shape

    @property
    def strategy(self) -> str:
        return self.plan.name

    @property
    def searched(self) -> bool:
        """A strategy runs (or a trace or content policy needs the whole answer): no token streams straight through."""
        return not self.plan.direct

    def ponder(self, samples: int, tokens: int) -> dict[str, Any]:
        """The ``ponder`` block of plain decoding, with what it spent."""
        spent = {"samples": samples, "tokens": tokens, "seconds": round(time.perf_counter() - self.started, 4)}
        return {**self.plan.ponder_block(), "spent": spent}


@dataclass
class StreamTally:
    """The tokens a stream has carried so far: recorded when it ends, and sent on each chunk with continuous usage."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token: bool = False  # the time to the first token is observed once
    cached: dict[int, int] = field(default_factory=dict)  # each prompt's cached tokens
    texts: dict[int, list[str]] = field(default_factory=dict)  # each choice's text so far
    tokens: dict[int, int] = field(default_factory=dict)  # each choice's tokens so far
    thinking: Thinking = field(default_factory=Thinking)  # how the choices' thinking tokens are told

    def add(self, choice: int, delta: SampleDelta, prompt: int = 0) -> None:
        """One delta of ``choice`` (of ``prompt``): its tokens and text."""
        self.completion_tokens += delta.num_tokens
        self.tokens[choice] = self.tokens.get(choice, 0) + delta.num_tokens
        self.texts.setdefault(choice, []).append(delta.text)
        self.cached[prompt] = delta.cached_tokens or self.cached.get(prompt, 0)

    def usage(self) -> UsageInfo:
        """The usage so far, the choices' thinking tokens counted as a whole response's are."""
        reasoning = sum(self.thinking.tokens("".join(text), self.tokens[k]) for k, text in self.texts.items())
        return usage_info(self.prompt_tokens, self.completion_tokens, sum(self.cached.values()), reasoning)


class Admission:
    """Counts requests in flight and refuses the one past ``--max-concurrency``."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise OverloadedError(
                f"The server is at its limit of {self.limit} concurrent requests; retry shortly.", retry_after=1
            )
        self.in_flight += 1
        self._metrics.in_flight.inc()

    def leave(self) -> None:
        self.in_flight -= 1
        self._metrics.in_flight.dec()


class ChunkWriter:
    """Frames the chunks of one stream: one id and timestamp for all, ``usage`` as the request asked."""

    def __init__(self, body: type[BaseModel], kind: str, model: str, ctx: RequestContext, tally: StreamTally) -> None:
        self._body = body
        self._id, self._created, self._model = new_id(kind), now(), model
        self._ctx = ctx
        self._tally = tally

    def __call__(self, choices: list[BaseModel], **extra: Any) -> str:
        if self._ctx.continuous_usage and extra.get("usage") is None:
            extra["usage"] = self._tally.usage()
        body = self._body(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            system_fingerprint=self._ctx.fingerprint,
            **extra,
        )
        return sse(chunk_dict(body, self._ctx.include_usage))


class ServingBase:
    """Shared validation and accounting of the chat and completion services."""

    route = ""

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        metrics: Metrics,
        model_names: list[str],
        verifiers: VerifierSet | None = None,
        step_format: StepFormat | None = None,
        content_filter: ContentFilter | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.engine = engine
        self.fingerprint = fingerprint
        self.settings = settings
        self.metrics = metrics
        self.model_names = model_names
        self.planner = StrategyPlanner(engine, settings, verifiers, filtered=content_filter is not None)
        self.runner = StrategyRunner(engine, step_format or StepFormat(), content_filter, self._searched)

    # ---- validation ----

    def check_model(self, name: str) -> None:
        if name not in self.model_names:
            raise NotFoundError(
                f"The model '{name}' does not exist; this server serves {', '.join(self.model_names)}.", param="model"
            )

    def check_prompt_chars(self, chars: int, param: str) -> None:
        """Refuse, before anything is rendered or tokenized, a prompt too long to fit whatever its tokens."""
        caps = self.engine.capabilities
        if caps.max_prompt_chars is not None and chars > caps.max_prompt_chars:
            raise PromptTooLongError(
                f"This model's maximum context length is {caps.max_model_len} tokens, but the prompt has {chars} "
                f"characters: more than {caps.max_model_len} of this model's tokens can hold "
                f"({caps.max_prompt_chars} characters).",
                param=param,
            )

    def sampling_params(self, req: PonderFields, max_tokens: int | None, logprobs: int | None) -> SamplingParams:
        caps = self.engine.capabilities
        limits = self.settings.limits
        if req.n > limits.max_n:
            raise InvalidRequestError(f"n must be at most {limits.max_n}.", param="n")
        if len(req.stop_list) > limits.max_stop:
            raise InvalidRequestError(f"At most {limits.max_stop} stop sequences are allowed.", param="stop")
        if req.seed is not None and not caps.seed:
            raise InvalidRequestError("This engine does not support seed.", param="seed")
        if (req.presence_penalty or req.frequency_penalty) and not caps.penalties:
            raise InvalidRequestError(
                "This engine does not support presence/frequency penalties.", param="presence_penalty"
            )
        if logprobs is not None:
            if not caps.logprobs:
                raise InvalidRequestError("This engine does not return logprobs.", param="logprobs")
            if logprobs > caps.max_top_logprobs:
                raise InvalidRequestError(f"At most {caps.max_top_logprobs} top logprobs.", param="top_logprobs")
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=tuple(req.stop_list),
            seed=req.seed,
            logprobs=logprobs,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )

    def context(self, req: PonderFields, max_tokens: int | None, logprobs: int | None) -> RequestContext:
        self.check_model(req.model)
        plan = self.planner.plan(req)
        params = plan.capped(self.sampling_params(req, max_tokens, logprobs), req.n)
        if not plan.direct and logprobs is not None:
            raise InvalidRequestError(
                f"logprobs are returned only with strategy 'none', not '{plan.name}'.", param="logprobs"
            )
        options = req.stream_options
        include_usage = bool(options and options.include_usage)
        continuous = include_usage and bool(options and options.continuous_usage_stats)  # vLLM: needs include_usage
        if continuous and not plan.direct:
            raise InvalidRequestError(
                "stream_options.continuous_usage_stats needs a plain token stream (strategy 'none', no trace, "
                f"no content policy), not '{plan.name}': a search's usage is known only when it ends.",
                param="stream_options",
            )
        return RequestContext(
            self.route, plan, params, req.n, logprobs or 0, include_usage, continuous, self.fingerprint
        )

    def thinking(self, starts_in_reasoning: bool = False) -> Thinking:
        """How this request's completions are read for thinking (the reasoning parser, the model's habits)."""
        parse = self.settings.reasoning_parser == "think"
        return Thinking(parse, self.runner.step_format.thinks, starts_in_reasoning, self.engine.count_tokens)

    # ---- running ----

    async def search(self, ctx: RequestContext, prompt: Prompt) -> StrategyResult:
        return await self.runner.run(ctx.plan, prompt, ctx.params, ctx.n, Trace(keep=ctx.plan.return_trace))

    def search_progress(self, ctx: RequestContext, prompt: Prompt) -> AsyncGenerator[str | StrategyResult, None]:
        return run_with_progress(self.runner, ctx.plan, prompt, ctx.params, ctx.n)

    # ---- accounting ----

    def _searched(self, plan: StrategyPlan, result: StrategyResult) -> None:
        self.metrics.search_samples.labels(plan.name).observe(result.spent.samples)

    def record_refusal(self, req: PonderFields, status: int) -> None:
        """A request refused before it was planned (503 past --max-concurrency)."""
        self.metrics.requests.labels(self.route, str(status), self.planner.label(req)).inc()

    def record(self, ctx: RequestContext, status: int, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        m = self.metrics
        m.requests.labels(ctx.route, str(status), ctx.strategy).inc()
        m.latency.labels(ctx.route, ctx.strategy).observe(time.perf_counter() - ctx.started)
        m.prompt_tokens.labels(ctx.strategy).inc(prompt_tokens)
        m.completion_tokens.labels(ctx.strategy).inc(completion_tokens)

    @contextmanager
    def recorded_failure(self, ctx: RequestContext) -> Iterator[None]:
        """A request that fails (an error, or the client cancelling it) is recorded with its status, then re-raised."""
        try:
            yield
        except BaseException as exc:
            self.record(ctx, failure_status(exc))
            raise

    def first_token(self, ctx: RequestContext, tally: StreamTally) -> None:
        if not tally.first_token:
            tally.first_token = True
            self.metrics.ttft.labels(ctx.route, ctx.strategy).observe(time.perf_counter() - ctx.started)

    async def prime(self, ctx: RequestContext, streams: list[AsyncIterator[SampleDelta]]) -> list[SampleDelta]:
        """Pull each stream's first delta before the HTTP response starts, so a bad prompt is a plain 4xx."""
        try:
            return [await anext(stream) for stream in streams]
        except BaseException as exc:
            for stream in streams:
                await stream.aclose()
            self.record(ctx, failure_status(exc))
            raise

    async def framed(
        self,
        ctx: RequestContext,
        events: AsyncGenerator[str, None],
        tally: StreamTally,
        source: AsyncIterator[Any] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Every stream's frame: its events; an error as one ``data: {"error": ...}`` event; then ``[DONE]``.

        ``source`` (what the events are made from) is closed however the stream ends, which aborts the
        engine's work; then the request is recorded with what the tally counted. The frame comes back
        started, so closing it runs that clean-up even when the client left before its first event was sent.
        """
        frame = self._frame(ctx, events, tally, source)
        await anext(frame)
        return frame

    async def _frame(
        self,
        ctx: RequestContext,
        events: AsyncGenerator[str, None],
        tally: StreamTally,
        source: AsyncIterator[Any] | None,
    ) -> AsyncGenerator[str, None]:
        status = 200
        try:
            yield ""  # where framed() leaves it: from here on, closing the generator runs the finally below
            async for event in events:
                yield event
        except (asyncio.CancelledError, GeneratorExit):  # the client left: a cancel, or the stream closed early
            status = CLIENT_CLOSED
            self.metrics.cancelled.labels(ctx.route).inc()
            raise
        except Exception as exc:
            status = error_from_exception(exc)[0]
            yield sse_error_event(exc)
        finally:
            await events.aclose()
            if source is not None:
                await source.aclose()
            self.record(ctx, status, tally.prompt_tokens, tally.completion_tokens)
        yield DONE


def failure_status(exc: BaseException) -> int:
    """The status a failed request is counted with: its error's, 499 when the client cancelled it, else 500."""
    if isinstance(exc, PonderError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return CLIENT_CLOSED
    return 500


def chunk_dict(body: BaseModel, include_usage: bool) -> dict[str, Any]:
    """A stream chunk as OpenAI sends it: deltas without unset keys, ``usage: null`` only when usage was asked for."""
    data = body.model_dump()
    for choice in data["choices"]:
        if "delta" in choice:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if choice.get("stop_reason") is None:
            choice.pop("stop_reason", None)
    if not include_usage:
        data.pop("usage", None)
    for optional in ("ponder", "system_fingerprint"):
        if data.get(optional) is None:
            data.pop(optional, None)
    return data


async def prepend(first: SampleDelta, rest: AsyncIterator[SampleDelta]) -> AsyncGenerator[SampleDelta, None]:
    """``first`` (pulled early by :meth:`ServingBase.prime`) then the rest of its stream."""
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()
