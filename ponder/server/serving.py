"""Request logic behind the routes: validate against the engine and limits, run, build responses and streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ponder.core.errors import InvalidRequestError, NotFoundError, OverloadedError, PonderError
from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN, ThinkSplitter, split_reasoning
from ponder.core.types import Prompt, SampleDelta, SamplingParams
from ponder.server.convert import chat_logprobs, completion_logprobs, samples_usage, usage_info
from ponder.server.errors import error_from_exception, sse_error_event
from ponder.server.metrics import Metrics
from ponder.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    PonderFields,
    new_id,
    now,
)
from ponder.server.settings import ServerSettings
from ponder.server.sse import DONE, merge_streams, sse
from ponder.server.strategy_serving import (
    StrategyPlan,
    StrategyPlanner,
    StrategyRunner,
    answer_parts,
    pieces,
    run_with_progress,
    strategy_ponder,
    strategy_usage,
)
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Trace


@dataclass
class RequestContext:
    """What a validated request resolved to; passed down, never stored on the service."""

    route: str
    params: SamplingParams
    n: int
    strategy: str
    top_k: int
    include_usage: bool
    ponder: dict[str, Any]
    plan: StrategyPlan
    started: float = field(default_factory=time.perf_counter)


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


class ServingBase:
    """Shared validation and accounting of the chat and completion services."""

    route = ""

    def __init__(
        self,
        engine,
        settings: ServerSettings,
        metrics: Metrics,
        model_names: list[str],
        verifiers=None,
        step_format: StepFormat | None = None,
        content_filter=None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.model_names = model_names
        self.planner = StrategyPlanner(engine, settings, verifiers, filtered=content_filter is not None)
        self.runner = StrategyRunner(engine, step_format or StepFormat(), content_filter)

    # ---- validation ----

    def check_model(self, name: str) -> None:
        if name not in self.model_names:
            raise NotFoundError(
                f"The model '{name}' does not exist; this server serves {', '.join(self.model_names)}.", param="model"
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
        params = self.sampling_params(req, max_tokens, logprobs)
        if not plan.direct and logprobs is not None:
            raise InvalidRequestError(
                f"logprobs are returned only with strategy 'none', not '{plan.name}'.", param="logprobs"
            )
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return RequestContext(
            self.route, params, req.n, plan.name, logprobs or 0, include_usage, plan.ponder_block(), plan
        )

    # ---- accounting ----

    def finish_ponder(self, ctx: RequestContext, samples: int, tokens: int) -> dict[str, Any]:
        spent = {"samples": samples, "tokens": tokens, "seconds": round(time.perf_counter() - ctx.started, 4)}
        return {**ctx.ponder, "spent": spent}

    def record(self, ctx: RequestContext, status: int, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        m = self.metrics
        m.requests.labels(ctx.route, str(status), ctx.strategy).inc()
        m.latency.labels(ctx.route, ctx.strategy).observe(time.perf_counter() - ctx.started)
        m.prompt_tokens.labels(ctx.strategy).inc(prompt_tokens)
        m.completion_tokens.labels(ctx.strategy).inc(completion_tokens)

    async def prime(self, ctx: RequestContext, streams: list[AsyncIterator[SampleDelta]]) -> list[SampleDelta]:
        """Pull each stream's first delta before the HTTP response starts, so a bad prompt is a plain 4xx."""
        try:
            return [await anext(stream) for stream in streams]
        except BaseException as exc:
            for stream in streams:
                await stream.aclose()
            self.record(ctx, exc.status if isinstance(exc, PonderError) else 500)
            raise


class ChatService(ServingBase):
    """``/v1/chat/completions``."""

    route = "/v1/chat/completions"

    def prompt(self, req: ChatCompletionRequest) -> Prompt:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        if req.continue_final_message:
            prefix = messages.pop()["content"]
            if not self.engine.capabilities.prefix_continuation:
                raise InvalidRequestError(
                    "This engine cannot continue a partial assistant message.", param="continue_final_message"
                )
            return Prompt.chat(messages, prefix=prefix)
        return Prompt.chat(messages)

    def _parses_reasoning(self) -> bool:
        return self.settings.reasoning_parser == "think"

    def _starts_in_reasoning(self, prompt: Prompt) -> bool:
        return self._parses_reasoning() and prompt.prefix.rfind(THINK_OPEN) > prompt.prefix.rfind(THINK_CLOSE)

    def plan(self, req: ChatCompletionRequest) -> tuple[RequestContext, Prompt]:
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        ctx = self.context(req, req.token_limit, logprobs)
        return ctx, self.prompt(req)

    async def create(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        ctx, prompt = self.plan(req)
        if not ctx.plan.direct:
            return await self._create_searched(req, ctx, prompt)
        try:
            samples = await self.engine.generate(prompt, ctx.params, ctx.n)
        except PonderError as exc:
            self.record(ctx, exc.status)
            raise
        choices = []
        for i, sample in enumerate(samples):
            if self._parses_reasoning():
                split = split_reasoning(sample.text, starts_in_reasoning=self._starts_in_reasoning(prompt))
                reasoning, content = split.reasoning or None, split.content
            else:
                reasoning, content = None, sample.text
            choices.append(
                ChatChoice(
                    index=i,
                    message=AssistantMessage(
                        content=content, reasoning_content=reasoning if req.include_reasoning else None
                    ),
                    logprobs=chat_logprobs(sample.logprobs, ctx.top_k),
                    finish_reason=sample.finish_reason,
                    stop_reason=sample.stop_reason,
                )
            )
        usage = samples_usage([samples])
        self.record(ctx, 200, usage.prompt_tokens, usage.completion_tokens)
        return ChatCompletionResponse(
            id=new_id("chatcmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage,
            ponder=self.finish_ponder(ctx, len(samples), usage.completion_tokens),
        )

    async def stream(self, req: ChatCompletionRequest) -> AsyncIterator[str]:
        """Validate and start the engine stream; returns the SSE event iterator (errors before it are plain HTTP)."""
        ctx, prompt = self.plan(req)
        if not ctx.plan.direct:
            return self._searched_events(req, ctx, prompt)
        deltas = self.engine.stream(prompt, ctx.params, ctx.n)
        [first] = await self.prime(ctx, [deltas])
        return self._events(req, ctx, prompt, first, deltas)

    async def _events(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt, first: SampleDelta, deltas
    ) -> AsyncIterator[str]:
        rid, created = new_id("chatcmpl"), now()

        def chunk(choices: list[ChatChunkChoice], **extra) -> str:
            body = ChatCompletionChunk(id=rid, created=created, model=req.model, choices=choices, **extra)
            return sse(chunk_dict(body, ctx.include_usage))

        splitters = [ThinkSplitter(starts_in_reasoning=self._starts_in_reasoning(prompt)) for _ in range(ctx.n)]
        parse = self._parses_reasoning()
        prompt_tokens = completion_tokens = 0
        first_token_at: float | None = None
        status = 200
        try:
            for i in range(ctx.n):
                yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            async for delta in _prepend(first, deltas):
                prompt_tokens = delta.prompt_tokens or prompt_tokens
                completion_tokens += delta.num_tokens
                if parse:
                    piece = splitters[delta.index].feed(delta.text)
                    if delta.finish_reason:
                        tail = splitters[delta.index].flush()
                        piece.reasoning += tail.reasoning
                        piece.content += tail.content
                    reasoning, content = piece.reasoning, piece.content
                else:
                    reasoning, content = "", delta.text
                if not req.include_reasoning:
                    reasoning = ""
                logprobs = chat_logprobs(delta.logprobs, ctx.top_k) if delta.logprobs else None
                if reasoning or content or logprobs:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                        self.metrics.ttft.labels(ctx.route, ctx.strategy).observe(first_token_at - ctx.started)
                    message = DeltaMessage(reasoning_content=reasoning or None, content=content or None)
                    yield chunk([ChatChunkChoice(index=delta.index, delta=message, logprobs=logprobs)])
                if delta.finish_reason:
                    finish = ChatChunkChoice(
                        index=delta.index,
                        delta=DeltaMessage(),
                        finish_reason=delta.finish_reason,
                        stop_reason=delta.stop_reason,
                    )
                    yield chunk([finish])
            if ctx.include_usage:
                usage = usage_info(prompt_tokens, completion_tokens)
                yield chunk([], usage=usage, ponder=self.finish_ponder(ctx, ctx.n, completion_tokens))
        except (asyncio.CancelledError, GeneratorExit):  # the client left: a cancel, or the stream closed early
            status = 499
            self.metrics.cancelled.labels(ctx.route).inc()
            raise
        except Exception as exc:
            status = error_from_exception(exc)[0]
            yield sse_error_event(exc)
        finally:
            await deltas.aclose()
            self.record(ctx, status, prompt_tokens, completion_tokens)
        yield DONE

    async def _create_searched(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt
    ) -> ChatCompletionResponse:
        try:
            result = await self.runner.run(ctx.plan, prompt, ctx.params, ctx.n, Trace(keep=ctx.plan.return_trace))
        except PonderError as exc:
            self.record(ctx, exc.status)
            raise
        choices = []
        for i, cand in enumerate(result.choices):
            reasoning, content = answer_parts(cand, self._parses_reasoning())
            message = AssistantMessage(content=content, reasoning_content=reasoning if req.include_reasoning else None)
            choices.append(ChatChoice(index=i, message=message, finish_reason=cand.finish_reason))
        prompt_tokens, completion_tokens, cached, reasoning_tokens = strategy_usage(result)
        self.record(ctx, 200, prompt_tokens, completion_tokens)
        return ChatCompletionResponse(
            id=new_id("chatcmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage_info(prompt_tokens, completion_tokens, cached, reasoning_tokens),
            ponder=strategy_ponder(ctx.plan, result),
        )

    async def _searched_events(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt
    ) -> AsyncIterator[str]:
        """The search's progress as reasoning deltas while it runs, then each chosen answer, then usage."""
        rid, created = new_id("chatcmpl"), now()

        def chunk(choices: list[ChatChunkChoice], **extra) -> str:
            body = ChatCompletionChunk(id=rid, created=created, model=req.model, choices=choices, **extra)
            return sse(chunk_dict(body, ctx.include_usage))

        def delta(index: int, **fields) -> str:
            return chunk([ChatChunkChoice(index=index, delta=DeltaMessage(**fields))])

        status, prompt_tokens, completion_tokens = 200, 0, 0
        progress = run_with_progress(self.runner, ctx.plan, prompt, ctx.params, ctx.n)
        try:
            for i in range(ctx.n):
                yield delta(i, role="assistant", content="")
            async for item in progress:
                if isinstance(item, str):
                    if req.include_reasoning:
                        yield delta(0, reasoning_content=item + "\n")
                    continue
                result = item
            self.metrics.ttft.labels(ctx.route, ctx.strategy).observe(time.perf_counter() - ctx.started)
            for i, cand in enumerate(result.choices):
                reasoning, content = answer_parts(cand, self._parses_reasoning())
                if reasoning and req.include_reasoning:
                    yield delta(i, reasoning_content=reasoning)
                for piece in pieces(content):
                    yield delta(i, content=piece)
                yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(), finish_reason=cand.finish_reason)])
            prompt_tokens, completion_tokens, cached, reasoning_tokens = strategy_usage(result)
            if ctx.include_usage:
                usage = usage_info(prompt_tokens, completion_tokens, cached, reasoning_tokens)
                yield chunk([], usage=usage, ponder=strategy_ponder(ctx.plan, result))
        except (asyncio.CancelledError, GeneratorExit):  # the client left: a cancel, or the stream closed early
            status = 499
            self.metrics.cancelled.labels(ctx.route).inc()
            raise
        except Exception as exc:
            status = error_from_exception(exc)[0]
            yield sse_error_event(exc)
        finally:
            await progress.aclose()
            self.record(ctx, status, prompt_tokens, completion_tokens)
        yield DONE


class CompletionService(ServingBase):
    """``/v1/completions``: raw text prompts, one or many, ``n`` samples each."""

    route = "/v1/completions"

    def plan(self, req: CompletionRequest) -> RequestContext:
        return self.context(req, req.max_tokens, req.logprobs)

    async def create(self, req: CompletionRequest) -> CompletionResponse:
        ctx = self.plan(req)
        if not ctx.plan.direct:
            return await self._create_searched(req, ctx)
        prompts = req.prompts
        try:
            results = await asyncio.gather(*(self.engine.generate(Prompt.raw(p), ctx.params, ctx.n) for p in prompts))
        except PonderError as exc:
            self.record(ctx, exc.status)
            raise
        choices = []
        for p, (text, samples) in enumerate(zip(prompts, results, strict=True)):
            for j, sample in enumerate(samples):
                echoed = text if req.echo else ""
                choices.append(
                    CompletionChoice(
                        index=p * ctx.n + j,
                        text=echoed + sample.text,
                        logprobs=completion_logprobs(sample.logprobs, ctx.top_k),
                        finish_reason=sample.finish_reason,
                        stop_reason=sample.stop_reason,
                    )
                )
        usage = samples_usage(results)
        self.record(ctx, 200, usage.prompt_tokens, usage.completion_tokens)
        return CompletionResponse(
            id=new_id("cmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage,
            ponder=self.finish_ponder(ctx, len(choices), usage.completion_tokens),
        )

    async def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        ctx = self.plan(req)
        if not ctx.plan.direct:
            if len(req.prompts) != 1:
                raise InvalidRequestError("Streaming a strategy takes one prompt at a time.", param="prompt")
            return self._searched_events(req, ctx)
        streams = [self.engine.stream(Prompt.raw(p), ctx.params, ctx.n) for p in req.prompts]
        firsts = await self.prime(ctx, streams)
        merged = merge_streams([_prepend(f, s) for f, s in zip(firsts, streams, strict=True)])
        return self._events(req, ctx, merged)

    async def _events(self, req: CompletionRequest, ctx: RequestContext, merged) -> AsyncIterator[str]:
        rid, created = new_id("cmpl"), now()
        prompt_tokens: dict[int, int] = {}
        completion_tokens = 0
        offsets: dict[int, int] = {}
        status = 200
        first_token = True

        def chunk(choices: list[CompletionChoice], usage=None) -> str:
            body = CompletionResponse(id=rid, created=created, model=req.model, choices=choices, usage=usage)
            return sse(chunk_dict(body, ctx.include_usage))

        try:
            if req.echo:
                for p, text in enumerate(req.prompts):
                    for j in range(ctx.n):
                        yield chunk([CompletionChoice(index=p * ctx.n + j, text=text)])
            async for p, delta in merged:
                index = p * ctx.n + delta.index
                prompt_tokens[p] = delta.prompt_tokens or prompt_tokens.get(p, 0)
                completion_tokens += delta.num_tokens
                if delta.text or delta.logprobs:
                    if first_token:
                        first_token = False
                        self.metrics.ttft.labels(ctx.route, ctx.strategy).observe(time.perf_counter() - ctx.started)
                    logprobs = completion_logprobs(delta.logprobs, ctx.top_k, offsets.get(index, 0))
                    offsets[index] = offsets.get(index, 0) + len(delta.text)
                    yield chunk([CompletionChoice(index=index, text=delta.text, logprobs=logprobs)])
                if delta.finish_reason:
                    finish = CompletionChoice(
                        index=index, text="", finish_reason=delta.finish_reason, stop_reason=delta.stop_reason
                    )
                    yield chunk([finish])
            if ctx.include_usage:
                yield chunk([], usage=usage_info(sum(prompt_tokens.values()), completion_tokens))
        except (asyncio.CancelledError, GeneratorExit):  # the client left: a cancel, or the stream closed early
            status = 499
            self.metrics.cancelled.labels(ctx.route).inc()
            raise
        except Exception as exc:
            status = error_from_exception(exc)[0]
            yield sse_error_event(exc)
        finally:
            await merged.aclose()
            self.record(ctx, status, sum(prompt_tokens.values()), completion_tokens)
        yield DONE

    async def _searched(self, ctx: RequestContext, text: str):
        return await self.runner.run(ctx.plan, Prompt.raw(text), ctx.params, ctx.n, Trace(keep=ctx.plan.return_trace))

    async def _create_searched(self, req: CompletionRequest, ctx: RequestContext) -> CompletionResponse:
        try:
            results = await asyncio.gather(*(self._searched(ctx, text) for text in req.prompts))
        except PonderError as exc:
            self.record(ctx, exc.status)
            raise
        choices = [
            CompletionChoice(
                index=p * ctx.n + j, text=(text if req.echo else "") + cand.text, finish_reason=cand.finish_reason
            )
            for p, (text, result) in enumerate(zip(req.prompts, results, strict=True))
            for j, cand in enumerate(result.choices)
        ]
        totals = [sum(u) for u in zip(*(strategy_usage(r) for r in results), strict=True)]
        self.record(ctx, 200, totals[0], totals[1])
        ponder = strategy_ponder(ctx.plan, results[0]) if len(results) == 1 else ctx.ponder
        return CompletionResponse(
            id=new_id("cmpl"), created=now(), model=req.model, choices=choices, usage=usage_info(*totals), ponder=ponder
        )

    async def _searched_events(self, req: CompletionRequest, ctx: RequestContext) -> AsyncIterator[str]:
        """Completions carry no reasoning field: the search runs, then the chosen texts stream as deltas."""
        rid, created = new_id("cmpl"), now()
        status, usage = 200, (0, 0, 0, 0)

        def chunk(choices: list[CompletionChoice], usage=None) -> str:
            body = CompletionResponse(id=rid, created=created, model=req.model, choices=choices, usage=usage)
            return sse(chunk_dict(body, ctx.include_usage))

        try:
            result = await self._searched(ctx, req.prompts[0])
            for i, cand in enumerate(result.choices):
                for piece in pieces((req.prompts[0] if req.echo else "") + cand.text):
                    yield chunk([CompletionChoice(index=i, text=piece)])
                yield chunk([CompletionChoice(index=i, text="", finish_reason=cand.finish_reason)])
            usage = strategy_usage(result)
            if ctx.include_usage:
                yield chunk([], usage=usage_info(*usage))
        except (asyncio.CancelledError, GeneratorExit):  # the client left: a cancel, or the stream closed early
            status = 499
            self.metrics.cancelled.labels(ctx.route).inc()
            raise
        except Exception as exc:
            status = error_from_exception(exc)[0]
            yield sse_error_event(exc)
        finally:
            self.record(ctx, status, usage[0], usage[1])
        yield DONE


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


async def _prepend(first: SampleDelta, rest: AsyncIterator[SampleDelta]) -> AsyncIterator[SampleDelta]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()
