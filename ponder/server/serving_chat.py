"""``/v1/chat/completions``: chat prompts, reasoning split off the content, plain decoding or a strategy's search."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ponder.core.errors import InvalidRequestError
from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN, ThinkSplitter, split_reasoning
from ponder.core.tools import ToolCallParser
from ponder.core.types import Prompt, Sample, SampleDelta
from ponder.server.convert import ThinkingLogprobs, chat_logprobs, samples_usage, usage_info
from ponder.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
    new_id,
    now,
)
from ponder.server.serving import ChunkWriter, RequestContext, ServingBase, StreamTally, prepend
from ponder.server.signatures import (
    Restored,
    ThoughtSignatures,
    ThoughtState,
    Turn,
    answer_state,
    message_signature,
    reuse_difficulty,
    sign_calls,
)
from ponder.server.strategy_serving import answer_parts, pieces, strategy_ponder, strategy_usage
from ponder.server.structured import (
    apply_output_spec,
    delta_tool_calls,
    message_fields,
    output_spec,
    template_messages,
    template_tools,
)
from ponder.strategies.base import StrategyResult


class ChatService(ServingBase):
    """``/v1/chat/completions``."""

    route = "/v1/chat/completions"
    tool_parser: ToolCallParser | None = None  # the model's tool-call syntax (--tool-call-parser); set by the app

    def __init__(self, *args: Any, signatures: ThoughtSignatures | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signatures = signatures

    def turns(self, req: ChatCompletionRequest) -> list[Turn]:
        return [
            Turn(m.role, m.text(), message_signature(m), f"messages[{i}].thought_signature")
            for i, m in enumerate(req.messages)
        ]

    def signed(self, ctx: RequestContext, state: ThoughtState) -> dict[str, Any]:
        """The signature fields of an answer (none when the server issues no signatures)."""
        if self.signatures is None or ctx.conversation is None:
            return {}
        return self.signatures.sign(ctx.conversation, state)

    def restore(self, req: ChatCompletionRequest) -> Restored | None:
        """The signatures sent back, checked, with the state they carry (None when the server issues none)."""
        return self.signatures.restore(self.turns(req)) if self.signatures is not None else None

    def prompt(self, req: ChatCompletionRequest, restored: Restored | None = None) -> Prompt:
        restored = restored or self.restore(req)
        if restored is not None:  # signed turns get their reasoning back (or not: --signature-reasoning)
            messages = restored.messages
        else:
            messages = [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages
            ]
        messages, tools = template_messages(messages, req.messages), template_tools(req)
        if req.continue_final_message:
            prefix = messages.pop()["content"]
            if not self.engine.capabilities.prefix_continuation:
                raise InvalidRequestError(
                    "This engine cannot continue a partial assistant message.", param="continue_final_message"
                )
            return Prompt.chat(messages, prefix=prefix, tools=tools)
        return Prompt.chat(messages, tools=tools)

    def _parses_reasoning(self) -> bool:
        return self.settings.reasoning_parser == "think"

    def _thinks(self) -> bool:
        """The model is known to think: text before a lone closing tag is its reasoning (vLLM's deepseek_r1)."""
        return self.runner.step_format.thinks

    def _starts_in_reasoning(self, prompt: Prompt) -> bool:
        return self._parses_reasoning() and prompt.prefix.rfind(THINK_OPEN) > prompt.prefix.rfind(THINK_CLOSE)

    def plan(self, req: ChatCompletionRequest) -> tuple[RequestContext, Prompt]:
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        ctx = self.context(req, req.token_limit, logprobs)
        apply_output_spec(ctx, output_spec(req, self.engine.capabilities, self.tool_parser))
        self.check_prompt_chars(sum(len(m.text()) for m in req.messages), "messages")
        restored = self.restore(req)
        if restored is not None:
            ctx.conversation = restored.conversation
            reuse_difficulty(ctx.plan, restored.last)
        return ctx, self.prompt(req, restored)

    # ---- whole responses ----

    async def create(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        ctx, prompt = self.plan(req)
        if ctx.searched:
            return await self._create_searched(req, ctx, prompt)
        with self.recorded_failure(ctx):
            samples = await self.runner.engine_for(ctx.plan).generate(prompt, ctx.params, ctx.n)
        choices = [self._choice(req, ctx, prompt, i, sample) for i, sample in enumerate(samples)]
        usage = samples_usage([samples], self.thinking(self._starts_in_reasoning(prompt)))
        self.record(ctx, 200, usage.prompt_tokens, usage.completion_tokens)
        return ChatCompletionResponse(
            id=new_id("chatcmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage,
            ponder=ctx.ponder(len(samples), usage.completion_tokens),
        )

    def _choice(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt, index: int, sample: Sample
    ) -> ChatChoice:
        if self._parses_reasoning():
            split = split_reasoning(
                sample.text, starts_in_reasoning=self._starts_in_reasoning(prompt), implicit_open=self._thinks()
            )
            reasoning, content = split.reasoning or None, split.content
        else:
            reasoning, content = None, sample.text
        signed = self.signed(ctx, answer_state(ctx.plan, reasoning, sample.num_tokens))
        return ChatChoice(
            index=index,
            message=AssistantMessage(
                content=content, reasoning_content=reasoning if req.include_reasoning else None, **signed
            ),
            logprobs=self._logprobs(req, ctx, prompt, sample),
            finish_reason=sample.finish_reason,
            stop_reason=sample.stop_reason,
        )

    def _logprobs(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt, sample: Sample
    ) -> ChoiceLogprobs | None:
        """The answer's token logprobs as ``content``; the thinking tokens' apart, when reasoning is included."""
        if sample.logprobs is None:
            return None
        thought, answer = self.thinking(self._starts_in_reasoning(prompt)).split_logprobs(sample.logprobs)
        return chat_logprobs(answer, ctx.top_k, thought if req.include_reasoning else None)

    async def _create_searched(
        self, req: ChatCompletionRequest, ctx: RequestContext, prompt: Prompt
    ) -> ChatCompletionResponse:
        with self.recorded_failure(ctx):
            result = await self.search(ctx, prompt)
        choices = []
        for i, cand in enumerate(result.choices):
            reasoning, content = answer_parts(cand, self._parses_reasoning(), self._thinks())
            answer = ctx.output.answer(content, cand.finish_reason)  # tool calls read from the chosen answer
            signed = self.signed(ctx, self._searched_state(ctx, result, reasoning))
            fields = message_fields(answer)
            sign_calls(fields["tool_calls"], signed)
            message = AssistantMessage(
                reasoning_content=reasoning if req.include_reasoning else None, **fields, **signed
            )
            choices.append(ChatChoice(index=i, message=message, finish_reason=answer.finish_reason))
        prompt_tokens, completion_tokens, cached, reasoning_tokens = strategy_usage(result, self.thinking())
        self.record(ctx, 200, prompt_tokens, completion_tokens)
        return ChatCompletionResponse(
            id=new_id("chatcmpl"),
            created=now(),
            model=req.model,
            choices=choices,
            usage=usage_info(prompt_tokens, completion_tokens, cached, reasoning_tokens),
            ponder=strategy_ponder(ctx.plan, result),
        )

    # ---- streams ----

    async def stream(self, req: ChatCompletionRequest) -> AsyncGenerator[str, None]:
        """Validate and start the engine stream; returns the SSE event iterator (errors before it are plain HTTP)."""
        ctx, prompt = self.plan(req)
        tally = StreamTally(thinking=self.thinking(self._starts_in_reasoning(prompt)))
        chunk = ChunkWriter(ChatCompletionChunk, "chatcmpl", req.model, ctx, tally)
        if ctx.searched:
            progress = self.search_progress(ctx, prompt)
            return await self.framed(ctx, self._searched_events(req, ctx, chunk, tally, progress), tally, progress)
        deltas = self.runner.engine_for(ctx.plan).stream(prompt, ctx.params, ctx.n)
        [first] = await self.prime(ctx, [deltas])
        tally.prompt_tokens = first.prompt_tokens
        events = self._events(req, ctx, prompt, chunk, tally, prepend(first, deltas))
        return await self.framed(ctx, events, tally, deltas)

    async def _events(
        self,
        req: ChatCompletionRequest,
        ctx: RequestContext,
        prompt: Prompt,
        chunk: ChunkWriter,
        tally: StreamTally,
        deltas: AsyncIterator[SampleDelta],
    ) -> AsyncGenerator[str, None]:
        """The engine's tokens as they come: a role chunk per choice, reasoning and content deltas, finishes, usage."""
        starts, implicit = self._starts_in_reasoning(prompt), self._thinks()
        splitters = [ThinkSplitter(starts_in_reasoning=starts, implicit_open=implicit) for _ in range(ctx.n)]
        token_splits = [ThinkingLogprobs(tally.thinking) for _ in range(ctx.n)]
        for i in range(ctx.n):
            yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
        thought = [""] * ctx.n  # each choice's reasoning, for its signature (its tokens: tally.tokens)
        async for delta in deltas:
            tally.prompt_tokens = delta.prompt_tokens or tally.prompt_tokens
            tally.add(delta.index, delta)
            reasoning, content = self._delta_parts(delta, splitters[delta.index])
            thought[delta.index] += reasoning
            if not req.include_reasoning:
                reasoning = ""
            logprobs = self._delta_logprobs(req, ctx, delta, token_splits[delta.index])
            if reasoning or content or logprobs:
                self.first_token(ctx, tally)
                message = DeltaMessage(reasoning_content=reasoning or None, content=content or None)
                yield chunk([ChatChunkChoice(index=delta.index, delta=message, logprobs=logprobs)])
            if delta.finish_reason:
                k = delta.index
                signed = self.signed(ctx, answer_state(ctx.plan, thought[k] or None, tally.tokens.get(k, 0)))
                finish = ChatChunkChoice(
                    index=delta.index,
                    delta=DeltaMessage(**signed),
                    finish_reason=delta.finish_reason,
                    stop_reason=delta.stop_reason,
                )
                yield chunk([finish])
        if ctx.include_usage:
            yield chunk([], usage=tally.usage(), ponder=ctx.ponder(ctx.n, tally.completion_tokens))

    @staticmethod
    def _delta_logprobs(
        req: ChatCompletionRequest, ctx: RequestContext, delta: SampleDelta, split: ThinkingLogprobs
    ) -> ChoiceLogprobs | None:
        """The logprobs of the tokens told apart by now, the answer's and (when included) the thinking ones."""
        if delta.logprobs is None and not delta.finish_reason:
            return None
        split.add(delta.logprobs or ())
        thought, answer = split.take(final=bool(delta.finish_reason))
        if not answer and not (thought and req.include_reasoning):
            return None
        return chat_logprobs(answer, ctx.top_k, thought if req.include_reasoning else None)

    def _delta_parts(self, delta: SampleDelta, splitter: ThinkSplitter) -> tuple[str, str]:
        """Reasoning and content of one delta (the splitter's held-back tail comes out with the finishing one)."""
        if not self._parses_reasoning():
            return "", delta.text
        piece = splitter.feed(delta.text)
        if delta.finish_reason:
            tail = splitter.flush()
            piece.reasoning += tail.reasoning
            piece.content += tail.content
        return piece.reasoning, piece.content

    async def _searched_events(
        self,
        req: ChatCompletionRequest,
        ctx: RequestContext,
        chunk: ChunkWriter,
        tally: StreamTally,
        progress: AsyncIterator[str | StrategyResult],
    ) -> AsyncGenerator[str, None]:
        """The search's progress as reasoning deltas while it runs, then each chosen answer, then usage."""

        def delta(index: int, **fields: str) -> str:
            return chunk([ChatChunkChoice(index=index, delta=DeltaMessage(**fields))])

        for i in range(ctx.n):
            yield delta(i, role="assistant", content="")
        async for item in progress:
            if isinstance(item, str):
                if req.include_reasoning:
                    # with return_trace, each progress chunk carries its structured event (the playground draws it)
                    event = getattr(item, "event", None) if ctx.plan.return_trace else None
                    line = ChatChunkChoice(index=0, delta=DeltaMessage(reasoning_content=item + "\n"))
                    yield chunk([line], ponder={"event": event}) if event else chunk([line])
                continue
            result = item
        self.first_token(ctx, tally)
        for i, cand in enumerate(result.choices):
            reasoning, content = answer_parts(cand, self._parses_reasoning(), self._thinks())
            if reasoning and req.include_reasoning:
                yield delta(i, reasoning_content=reasoning)
            answer = ctx.output.answer(content, cand.finish_reason)
            for piece in pieces(answer.content or ""):
                yield delta(i, content=piece)
            signed = self.signed(ctx, self._searched_state(ctx, result, reasoning))
            if answer.calls:
                calls = sign_calls(delta_tool_calls(answer), signed)
                yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(tool_calls=calls))])
            yield chunk([ChatChunkChoice(index=i, delta=DeltaMessage(**signed), finish_reason=answer.finish_reason)])
        tally.prompt_tokens, tally.completion_tokens, cached, reasoning_tokens = strategy_usage(result, self.thinking())
        if ctx.include_usage:
            usage = usage_info(tally.prompt_tokens, tally.completion_tokens, cached, reasoning_tokens)
            yield chunk([], usage=usage, ponder=strategy_ponder(ctx.plan, result))

    def _searched_state(self, ctx: RequestContext, result: StrategyResult, reasoning: str | None) -> ThoughtState:
        summary = {**result.summary(), "samples": result.spent.samples, "tokens": result.spent.tokens}
        return answer_state(ctx.plan, reasoning, result.spent.tokens, summary, result.trace.candidates)
