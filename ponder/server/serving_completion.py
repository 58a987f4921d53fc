"""``/v1/completions``: raw text prompts, one or many, ``n`` samples each, plain decoding or a strategy's search."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator

from ponder.core.errors import InvalidRequestError, PromptTooLongError
from ponder.core.types import Prompt, SampleDelta, TokenLogprob
from ponder.server.convert import completion_logprobs, echoed_logprobs, samples_usage, usage_info
from ponder.server.protocol import CompletionChoice, CompletionRequest, CompletionResponse, new_id, now
from ponder.server.serving import ChunkWriter, RequestContext, ServingBase, StreamTally, prepend
from ponder.server.sse import merge_streams
from ponder.server.strategy_serving import pieces, strategy_ponder, strategy_usage


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
        texts = [p for p in req.prompts if isinstance(p, str)]
        if texts:
            self.check_prompt_chars(max(map(len, texts)), "prompt")
        if req.echo and req.logprobs is not None:  # the prompt's own logprobs come first (loglikelihood benchmarks)
            ctx.params = dataclasses.replace(ctx.params, prompt_logprobs=req.logprobs)
        return ctx

    def prompts(self, req: CompletionRequest, ctx: RequestContext) -> list[tuple[Prompt, str | None]]:
        """Each prompt as the engine takes it, with its text (what echo sends back; ``None``: not known here).

        A search reads text (verifiers, step prefixes), so token ids are decoded for it, where the engine can.
        """
        out = []
        for p in req.prompts:
            if isinstance(p, str):
                out.append((Prompt.raw(p), p))
                continue
            if len(p) >= self.engine.capabilities.max_model_len:
                raise PromptTooLongError(
                    f"This model's maximum context length is {self.engine.capabilities.max_model_len} tokens, "
                    f"but the prompt has {len(p)} tokens.",
                    param="prompt",
                )
            text = self.engine.decode(p)
            if text is None and (ctx.searched or (req.echo and req.logprobs is None)):
                raise InvalidRequestError(
                    "Token-id prompts are decoded by the model's tokenizer for echo and strategies; this engine "
                    "(an upstream server) has none here: send text.",
                    param="prompt",
                )
            out.append((Prompt.raw(text) if ctx.searched else Prompt.tokens(p), text))
        return out

    # ---- whole responses ----

    async def create(self, req: CompletionRequest) -> CompletionResponse:
        ctx = self.plan(req)
        if ctx.searched:
            return await self._create_searched(req, ctx)
        prompts = self.prompts(req, ctx)
        with self.recorded_failure(ctx):
            engine = self.runner.engine_for(ctx.plan)
            results = await asyncio.gather(*(engine.generate(prompt, ctx.params, ctx.n) for prompt, _ in prompts))
        choices = []
        for p, ((_, text), samples) in enumerate(zip(prompts, results, strict=True)):
            for j, sample in enumerate(samples):
                echoed = echo_text(text, sample.prompt_logprobs) if req.echo else ""
                choices.append(
                    CompletionChoice(
                        index=p * ctx.n + j,
                        text=echoed + sample.text,
                        logprobs=echoed_logprobs(sample.prompt_logprobs, sample.logprobs, ctx.top_k, len(echoed)),
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

    async def _create_searched(self, req: CompletionRequest, ctx: RequestContext) -> CompletionResponse:
        prompts = self.prompts(req, ctx)
        with self.recorded_failure(ctx):
            results = await asyncio.gather(*(self.search(ctx, prompt) for prompt, _ in prompts))
        choices = [
            CompletionChoice(
                index=p * ctx.n + j,
                text=((text or "") if req.echo else "") + cand.text,
                finish_reason=cand.finish_reason,
            )
            for p, ((_, text), result) in enumerate(zip(prompts, results, strict=True))
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
            prompt, text = self.prompts(req, ctx)[0]
            return await self.framed(ctx, self._searched_events(req, ctx, chunk, tally, prompt, text), tally)
        engine = self.runner.engine_for(ctx.plan)
        prompts = self.prompts(req, ctx)
        streams = [engine.stream(prompt, ctx.params, ctx.n) for prompt, _ in prompts]
        firsts = await self.prime(ctx, streams)
        merged = merge_streams([prepend(f, s) for f, s in zip(firsts, streams, strict=True)])
        echoes = [echo_text(text, first.prompt_logprobs) for (_, text), first in zip(prompts, firsts, strict=True)]
        events = self._events(req, ctx, chunk, tally, merged, firsts, echoes)
        return await self.framed(ctx, events, tally, merged)

    async def _events(
        self,
        req: CompletionRequest,
        ctx: RequestContext,
        chunk: ChunkWriter,
        tally: StreamTally,
        merged: AsyncIterator[tuple[int, SampleDelta]],
        firsts: list[SampleDelta],
        echoes: list[str],
    ) -> AsyncGenerator[str, None]:
        """Every prompt's samples as they come (choice ``p * n + j``), echoed prompts first, finishes, usage."""
        offsets: dict[int, int] = {}
        prompt_tokens = [f.prompt_tokens for f in firsts]
        tally.prompt_tokens = sum(prompt_tokens)
        if req.echo:
            for p, (text, first) in enumerate(zip(echoes, firsts, strict=True)):
                logprobs = completion_logprobs(first.prompt_logprobs, ctx.top_k)
                for j in range(ctx.n):
                    offsets[p * ctx.n + j] = len(text)
                    yield chunk([CompletionChoice(index=p * ctx.n + j, text=text, logprobs=logprobs)])
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
        self,
        req: CompletionRequest,
        ctx: RequestContext,
        chunk: ChunkWriter,
        tally: StreamTally,
        prompt: Prompt,
        text: str | None,
    ) -> AsyncGenerator[str, None]:
        """Completions carry no reasoning field: the search runs, then the chosen texts stream as deltas."""
        result = await self.search(ctx, prompt)
        for i, cand in enumerate(result.choices):
            for piece in pieces(((text or "") if req.echo else "") + cand.text):
                yield chunk([CompletionChoice(index=i, text=piece)])
            yield chunk([CompletionChoice(index=i, text="", finish_reason=cand.finish_reason)])
        usage = strategy_usage(result, self.thinking())
        tally.prompt_tokens, tally.completion_tokens = usage[0], usage[1]
        if ctx.include_usage:
            yield chunk([], usage=usage_info(*usage))


def echo_text(text: str | None, prompt_logprobs: list[TokenLogprob] | None) -> str:
    """What echo sends back of a prompt: its text, else (token ids over an upstream) its tokens' text."""
    if text is not None:
        return text
    return "".join(t.token for t in prompt_logprobs or ())
