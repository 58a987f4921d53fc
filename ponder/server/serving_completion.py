"""``/v1/completions``: raw text prompts, one or many, ``n`` samples each, plain decoding or a strategy's search."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Prompt, SampleDelta
from ponder.server.convert import completion_logprobs, samples_usage, usage_info
from ponder.server.protocol import CompletionChoice, CompletionRequest, CompletionResponse, new_id, now
from ponder.server.serving import ChunkWriter, RequestContext, ServingBase, StreamTally, prepend
from ponder.server.sse import merge_streams
from ponder.server.strategy_serving import pieces, strategy_ponder, strategy_usage
from ponder.strategies.base import StrategyResult


class CompletionService(ServingBase):
    """``/v1/completions``: raw text prompts, one or many, ``n`` samples each."""

    route = "/v1/completions"

    def plan(self, req: CompletionRequest) -> RequestContext:
        limit = self.settings.limits.max_prompts
        if len(req.prompts) > limit:
            raise InvalidRequestError(
                f"At most {limit} prompts in one request (--max-prompts), got {len(req.prompts)}.", param="prompt"
            )
        ctx = self.context(req, req.max_tokens, req.logprobs)
        self.check_prompt_chars(max(len(p) for p in req.prompts), "prompt")
        return ctx

    # ---- whole responses ----

    async def create(self, req: CompletionRequest) -> CompletionResponse:
        ctx = self.plan(req)
        if ctx.searched:
            return await self._create_searched(req, ctx)
        prompts = req.prompts
        with self.recorded_failure(ctx):
            engine = self.runner.engine_for(ctx.plan)
            results = await asyncio.gather(*(engine.generate(Prompt.raw(p), ctx.params, ctx.n) for p in prompts))
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
        usage = samples_usage(results, self.thinking())
        self.record(ctx, 200, usage.prompt_tokens, usage.completion_tokens)
        return CompletionResponse(
            id=new_id("cmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage,
            ponder=ctx.ponder(len(choices), usage.completion_tokens),
        )

    async def _searched(self, ctx: RequestContext, text: str) -> StrategyResult:
        return await self.search(ctx, Prompt.raw(text))

    async def _create_searched(self, req: CompletionRequest, ctx: RequestContext) -> CompletionResponse:
        with self.recorded_failure(ctx):
            results = await asyncio.gather(*(self._searched(ctx, text) for text in req.prompts))
        choices = [
            CompletionChoice(
                index=p * ctx.n + j, text=(text if req.echo else "") + cand.text, finish_reason=cand.finish_reason
            )
            for p, (text, result) in enumerate(zip(req.prompts, results, strict=True))
            for j, cand in enumerate(result.choices)
        ]
        totals = [sum(u) for u in zip(*(strategy_usage(r, self.thinking()) for r in results), strict=True)]
        self.record(ctx, 200, totals[0], totals[1])
        ponder = strategy_ponder(ctx.plan, results[0]) if len(results) == 1 else ctx.plan.ponder_block()
        return CompletionResponse(
            id=new_id("cmpl"), created=now(), model=req.model, choices=choices, usage=usage_info(*totals), ponder=ponder
        )

    # ---- streams ----

    async def stream(self, req: CompletionRequest) -> AsyncGenerator[str, None]:
        ctx = self.plan(req)
        tally = StreamTally(thinking=self.thinking())
        chunk = ChunkWriter(CompletionResponse, "cmpl", req.model, ctx, tally)
        if ctx.searched:
            if len(req.prompts) != 1:
                raise InvalidRequestError("Streaming a strategy takes one prompt at a time.", param="prompt")
            return await self.framed(ctx, self._searched_events(req, ctx, chunk, tally), tally)
        engine = self.runner.engine_for(ctx.plan)
        streams = [engine.stream(Prompt.raw(p), ctx.params, ctx.n) for p in req.prompts]
        firsts = await self.prime(ctx, streams)
        merged = merge_streams([prepend(f, s) for f, s in zip(firsts, streams, strict=True)])
        events = self._events(req, ctx, chunk, tally, merged, [f.prompt_tokens for f in firsts])
        return await self.framed(ctx, events, tally, merged)

    async def _events(
        self,
        req: CompletionRequest,
        ctx: RequestContext,
        chunk: ChunkWriter,
        tally: StreamTally,
        merged: AsyncIterator[tuple[int, SampleDelta]],
        prompt_tokens: list[int],
    ) -> AsyncGenerator[str, None]:
        """Every prompt's samples as they come (choice ``p * n + j``), echoed prompts first, finishes, usage."""
        offsets: dict[int, int] = {}
        tally.prompt_tokens = sum(prompt_tokens)
        if req.echo:
            for p, text in enumerate(req.prompts):
                for j in range(ctx.n):
                    yield chunk([CompletionChoice(index=p * ctx.n + j, text=text)])
        async for p, delta in merged:
            index = p * ctx.n + delta.index
            prompt_tokens[p] = delta.prompt_tokens or prompt_tokens[p]
            tally.prompt_tokens = sum(prompt_tokens)
            tally.add(index, delta, prompt=p)
            if delta.text or delta.logprobs:
                self.first_token(ctx, tally)
                logprobs = completion_logprobs(delta.logprobs, ctx.top_k, offsets.get(index, 0))
                offsets[index] = offsets.get(index, 0) + len(delta.text)
                yield chunk([CompletionChoice(index=index, text=delta.text, logprobs=logprobs)])
            if delta.finish_reason:
                finish = CompletionChoice(
                    index=index, text="", finish_reason=delta.finish_reason, stop_reason=delta.stop_reason
                )
                yield chunk([finish])
        if ctx.include_usage:
            yield chunk([], usage=tally.usage())

    async def _searched_events(
        self, req: CompletionRequest, ctx: RequestContext, chunk: ChunkWriter, tally: StreamTally
    ) -> AsyncGenerator[str, None]:
        """Completions carry no reasoning field: the search runs, then the chosen texts stream as deltas."""
        result = await self._searched(ctx, req.prompts[0])
        for i, cand in enumerate(result.choices):
            for piece in pieces((req.prompts[0] if req.echo else "") + cand.text):
                yield chunk([CompletionChoice(index=i, text=piece)])
            yield chunk([CompletionChoice(index=i, text="", finish_reason=cand.finish_reason)])
        usage = strategy_usage(result, self.thinking())
        tally.prompt_tokens, tally.completion_tokens = usage[0], usage[1]
        if ctx.include_usage:
            yield chunk([], usage=usage_info(*usage))
