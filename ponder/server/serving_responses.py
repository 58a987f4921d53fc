"""``/v1/responses``: the Responses API served by the chat service, its answers and streams re-framed as items."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.server.protocol import ChatCompletionRequest, ChatCompletionResponse, now
from ponder.server.protocol_responses import (
    InputTokensDetails,
    MessageItem,
    OutputMessage,
    OutputReasoning,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)
from ponder.server.serving_chat import ChatService
from ponder.server.signatures import Turn

# The extension and sampling fields a Responses request hands to the chat service unchanged.
PASSED = (
    "model", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user", "strategy",
    "strategy_options", "verifier", "budget", "thinking_level", "thinking_budget", "return_trace", "include_reasoning",
)  # fmt: skip
# Chat parameter names as a Responses client knows them, for error messages.
RENAMED = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens", "messages": "input"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponsesChatRequest(ChatCompletionRequest):
    """A Responses request as the chat service runs it; ``signature_params`` says where each message came from."""

    signature_params: list[str] = Field(default_factory=list)


def item_id(kind: str) -> str:
    return f"{kind}_{uuid.uuid4().hex}"


@contextmanager
def responses_params() -> Iterator[None]:
    """Errors that name a chat parameter name the Responses parameter instead."""
    try:
        yield
    except InvalidRequestError as exc:
        if exc.param in RENAMED:
            exc.message = exc.message.replace(exc.param, RENAMED[exc.param])
            exc.param = RENAMED[exc.param]
        raise


class ResponsesService(ChatService):
    """``/v1/responses``, stateless: the conversation, and its reasoning state, come back as input items."""

    route = "/v1/responses"

    def turns(self, req: ChatCompletionRequest) -> list[Turn]:
        turns = super().turns(req)
        params = getattr(req, "signature_params", None)
        return [dataclasses.replace(t, param=p) for t, p in zip(turns, params, strict=True)] if params else turns

    def to_chat(self, req: ResponsesRequest) -> ResponsesChatRequest:
        """The chat request of ``req``: instructions as the system turn, a reasoning item's signature on the
        assistant message that follows it."""
        messages: list[dict[str, Any]] = []
        params: list[str] = []
        if req.instructions:
            messages.append({"role": "system", "content": req.instructions})
            params.append("instructions")
        items = [MessageItem(role="user", content=req.input)] if isinstance(req.input, str) else req.input
        pending: tuple[str, str] | None = None  # a reasoning item's signature and where it was

        def flush() -> None:  # a reasoning item with no answer after it: an empty assistant turn carries it
            messages.append({"role": "assistant", "content": "", "thought_signature": pending[0]})
            params.append(pending[1])

        for k, item in enumerate(items):
            if isinstance(item, ReasoningItem):
                if pending:
                    flush()
                pending = (item.encrypted_content, f"input[{k}].encrypted_content") if item.encrypted_content else None
                continue
            message: dict[str, Any] = {"role": item.role, "content": item.text()}
            where = f"input[{k}]"
            if pending and item.role == "assistant":
                message["thought_signature"], where = pending
            elif pending:
                flush()
            pending = None
            messages.append(message)
            params.append(where)
        if pending:
            flush()
        passed = req.model_dump(include=set(PASSED), exclude_unset=True)
        try:
            return ResponsesChatRequest(
                messages=messages,
                max_tokens=req.max_output_tokens,
                reasoning_effort=req.effort,
                stream=req.stream,
                stream_options={"include_usage": True} if req.stream else None,
                signature_params=params,
                **passed,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequestError(f"input: {first['msg']}", param="input") from None

    # ---- whole responses ----

    async def create(self, req: ResponsesRequest) -> ResponseObject:  # type: ignore[override]
        with responses_params():
            chat = self.to_chat(req)
            answer = await super().create(chat)
        return self.response(req, answer)

    def response(self, req: ResponsesRequest, answer: ChatCompletionResponse) -> ResponseObject:
        choice = answer.choices[0]
        message = choice.message
        output: list[OutputReasoning | OutputMessage] = []
        reasoning = reasoning_item(req, item_id("rs"), message.reasoning_content, message.thought_signature)
        if reasoning is not None:
            output.append(reasoning)
        status = "incomplete" if choice.finish_reason in INCOMPLETE else "completed"
        text = OutputText(text=message.content or "")
        output.append(OutputMessage(id=item_id("msg"), status=status, content=[text]))
        return self.envelope(req, status, choice.finish_reason, output, usage_of(answer.usage), answer.ponder)

    def envelope(
        self,
        req: ResponsesRequest,
        status: str,
        finish_reason: str | None,
        output: list[Any],
        usage: ResponseUsage | None,
        ponder: dict[str, Any] | None,
        response_id: str | None = None,
    ) -> ResponseObject:
        reason = INCOMPLETE.get(finish_reason or "")
        return ResponseObject(
            id=response_id or item_id("resp"),
            created_at=now(),
            status=status,
            incomplete_details={"reason": reason} if status == "incomplete" and reason else None,
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            model=req.model,
            output=output,
            reasoning={"effort": req.effort, "summary": req.summary},
            temperature=req.temperature,
            top_p=req.top_p,
            usage=usage,
            user=req.user,
            metadata=req.metadata or {},
            ponder=ponder,
        )

    # ---- streams ----

    async def stream(self, req: ResponsesRequest) -> AsyncGenerator[str, None]:  # type: ignore[override]
        """Validate and start the chat stream (errors before it are plain HTTP); its chunks become Responses events."""
        with responses_params():
            chat = self.to_chat(req)
            chunks = await super().stream(chat)
        return ResponseEvents(self, req).run(chunks)


def reasoning_item(
    req: ResponsesRequest, rid: str, reasoning: str | None, signature: str | None, status: str = "completed"
) -> OutputReasoning | None:
    """The reasoning item of an answer: its text (as a summary when one was asked for) and, when included, its
    signature as ``encrypted_content``; ``None`` when there is neither."""
    encrypted = signature if req.encrypted else None
    if not reasoning and encrypted is None:
        return None
    texts = (
        [ReasoningText(type="summary_text" if req.summary else "reasoning_text", text=reasoning)] if reasoning else []
    )
    if req.summary:
        return OutputReasoning(id=rid, summary=texts, encrypted_content=encrypted, status=status)
    return OutputReasoning(id=rid, content=texts, encrypted_content=encrypted, status=status)


def usage_of(usage: BaseModel | dict[str, Any] | None) -> ResponseUsage | None:
    """Chat usage (a model, or a stream chunk's dict) in the Responses API's names."""
    if usage is None:
        return None
    data = usage.model_dump() if isinstance(usage, BaseModel) else usage
    cached = (data.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    reasoning = (data.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    return ResponseUsage(
        input_tokens=data.get("prompt_tokens", 0),
        input_tokens_details=InputTokensDetails(cached_tokens=cached),
        output_tokens=data.get("completion_tokens", 0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
        total_tokens=data.get("total_tokens", 0),
    )


class ResponseEvents:
    """One Responses stream: the chat stream's chunks re-framed as the spec's typed events, numbered in order.

    The chat service streams (and meters, and cancels) the request; this only renames what it sends. The
    reasoning item stays open until the answer's last chunk brings its signature, so the item's
    ``output_item.done`` carries the final ``encrypted_content``, as the spec tells clients to expect.
    """

    def __init__(self, service: ResponsesService, req: ResponsesRequest) -> None:
        self.service = service
        self.req = req
        self.id = item_id("resp")
        self.seq = 0
        self.reasoning_id: str | None = None
        self.reasoning = ""
        self.reasoning_done = False
        self.message_id: str | None = None
        self.text = ""
        self.finish_reason: str | None = None
        self.signature: str | None = None
        self.usage: ResponseUsage | None = None
        self.ponder: dict[str, Any] | None = None

    def event(self, kind: str, **data: Any) -> str:
        body = {"type": kind, **data, "sequence_number": self.seq}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}\n\n"

    def snapshot(self, status: str, output: list[Any] | None = None) -> dict[str, Any]:
        obj = self.service.envelope(
            self.req, status, self.finish_reason, output or [], self.usage, self.ponder, self.id
        )
        return obj.model_dump()

    reasoning_index = 0  # the reasoning item, when there is one, comes first

    @property
    def message_index(self) -> int:
        return 1 if self.reasoning_id else 0

    async def run(self, chunks: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        yield self.event("response.created", response=self.snapshot("in_progress"))
        yield self.event("response.in_progress", response=self.snapshot("in_progress"))
        if self.req.encrypted:  # the item that will carry the signature exists from the start
            for event in self.open_reasoning():
                yield event
        try:
            async for raw in chunks:
                if not raw.startswith("data: "):  # a comment or keep-alive frame: nothing to rename
                    continue
                payload = raw.removeprefix("data: ").strip()
                if payload == "[DONE]":
                    break
                data = json.loads(payload)
                if "error" in data:
                    for event in self.failed(data["error"]):
                        yield event
                    return
                for event in self.chunk(data):
                    yield event
        finally:
            await chunks.aclose()
        for event in self.finish():
            yield event

    def open_reasoning(self) -> list[str]:
        self.reasoning_id = item_id("rs")
        item = OutputReasoning(id=self.reasoning_id, status="in_progress").model_dump()
        events = [self.event("response.output_item.added", output_index=0, item=item)]
        if self.req.summary:
            part = {"type": "summary_text", "text": ""}
            events.append(self.event("response.reasoning_summary_part.added", **self._at_reasoning(), part=part))
        return events

    def _at_reasoning(self) -> dict[str, Any]:
        place = {"item_id": self.reasoning_id, "output_index": self.reasoning_index}
        return {**place, "summary_index": 0} if self.req.summary else {**place, "content_index": 0}

    def _at_message(self) -> dict[str, Any]:
        return {"item_id": self.message_id, "output_index": self.message_index, "content_index": 0}

    def chunk(self, data: dict[str, Any]) -> Iterator[str]:
        if data.get("usage"):
            self.usage = usage_of(data["usage"])
        if data.get("ponder"):
            self.ponder = data["ponder"]
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                if self.reasoning_id is None:
                    yield from self.open_reasoning()
                self.reasoning += delta["reasoning_content"]
                kind = "response.reasoning_summary_text.delta" if self.req.summary else "response.reasoning_text.delta"
                yield self.event(kind, **self._at_reasoning(), delta=delta["reasoning_content"])
            if delta.get("content"):
                yield from self.open_message()
                self.text += delta["content"]
                yield self.event(
                    "response.output_text.delta", **self._at_message(), delta=delta["content"], logprobs=[]
                )
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.signature = delta.get("thought_signature")

    def close_reasoning_text(self) -> Iterator[str]:
        if self.reasoning_id is None or self.reasoning_done:
            return
        self.reasoning_done = True
        if self.req.summary:
            yield self.event("response.reasoning_summary_text.done", **self._at_reasoning(), text=self.reasoning)
            part = {"type": "summary_text", "text": self.reasoning}
            yield self.event("response.reasoning_summary_part.done", **self._at_reasoning(), part=part)
        elif self.reasoning:
            yield self.event("response.reasoning_text.done", **self._at_reasoning(), text=self.reasoning)

    def open_message(self) -> Iterator[str]:
        if self.message_id is not None:
            return
        yield from self.close_reasoning_text()
        self.message_id = item_id("msg")
        item = OutputMessage(id=self.message_id, status="in_progress").model_dump()
        yield self.event("response.output_item.added", output_index=self.message_index, item=item)
        part = OutputText(text="").model_dump()
        yield self.event("response.content_part.added", **self._at_message(), part=part)

    def output(self, status: str) -> list[Any]:
        items: list[Any] = []
        if self.reasoning_id is not None:
            reasoning = reasoning_item(self.req, self.reasoning_id, self.reasoning, self.signature, "completed")
            items.append(reasoning or OutputReasoning(id=self.reasoning_id))
        items.append(
            OutputMessage(id=self.message_id or item_id("msg"), status=status, content=[OutputText(text=self.text)])
        )
        return items

    def finish(self) -> Iterator[str]:
        yield from self.open_message()
        status = "incomplete" if self.finish_reason in INCOMPLETE else "completed"
        yield self.event("response.output_text.done", **self._at_message(), text=self.text, logprobs=[])
        part = OutputText(text=self.text).model_dump()
        yield self.event("response.content_part.done", **self._at_message(), part=part)
        output = self.output(status)
        for index, item in enumerate(output):
            yield self.event("response.output_item.done", output_index=index, item=item.model_dump())
        kind = "response.completed" if status == "completed" else "response.incomplete"
        yield self.event(kind, response=self.snapshot(status, output))

    def failed(self, error: dict[str, Any]) -> Iterator[str]:
        code = error.get("code")
        yield self.event("error", code=str(code), message=error.get("message", ""), param=error.get("param"))
        obj = self.snapshot("failed")
        obj["error"] = {"code": str(code), "message": error.get("message", "")}
        yield self.event("response.failed", response=obj)
