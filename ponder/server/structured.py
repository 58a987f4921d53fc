"""The shape a chat answer must take: ``response_format`` and forced tool calls as engine constraints, and tool calls
read back from each answer (by the model's tool-call parser, or from the forced call's JSON)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ponder.core.errors import InvalidRequestError
from ponder.core.tools import (
    ParsedTools,
    ToolCall,
    ToolCallParser,
    named_call_schema,
    parse_named_call,
    parse_required_calls,
    required_calls_schema,
)
from ponder.core.types import EngineCapabilities, StructuredOutput
from ponder.server.protocol import DeltaToolCall, FunctionCallOut, ToolCallOut

if TYPE_CHECKING:
    from ponder.server.protocol import ChatCompletionRequest, ChatMessage
    from ponder.server.serving import RequestContext
    from ponder.server.strategy_serving import StrategyPlan


@dataclass(frozen=True)
class Answer:
    """One answer's visible content, its tool calls, and its finish reason once calls are read."""

    content: str | None
    calls: list[ToolCall]
    finish_reason: str | None


@dataclass(frozen=True)
class OutputSpec:
    """What a chat request asks of its answers' shape; built once per request, before any work starts."""

    structured: StructuredOutput | None = None  # the engine constrains every sample (every candidate) to it
    tools: tuple[dict, ...] | None = None  # shown to the model by its chat template
    mode: str | None = None  # how tool calls are read: auto (the parser), required, named; None: not at all
    named: str | None = None  # the forced function's name
    parser: ToolCallParser | None = None

    @property
    def reads_calls(self) -> bool:
        """Answers are read for tool calls, so they are sent whole, never streamed token by token."""
        return self.mode is not None

    def answer(self, content: str, finish_reason: str | None) -> Answer:
        """Content and calls of an answer; a forced call finishes ``stop`` (as OpenAI), a chosen one ``tool_calls``."""
        if self.mode == "named" and self.named is not None:
            return Answer(None, [parse_named_call(content, self.named)], finish_reason)
        if self.mode == "required":
            calls = parse_required_calls(content)
            if calls is None:  # cut short (max_tokens) before the array closed: the text, as generated
                return Answer(content, [], finish_reason)
            return Answer(None, calls, "tool_calls" if finish_reason == "stop" else finish_reason)
        if self.mode == "auto" and self.parser is not None:
            parsed: ParsedTools = self.parser.parse(content, list(self.tools or ()))
            if parsed.calls:
                return Answer(parsed.content, parsed.calls, "tool_calls" if finish_reason == "stop" else finish_reason)
        return Answer(content, [], finish_reason)


def output_spec(
    req: ChatCompletionRequest, capabilities: EngineCapabilities, parser: ToolCallParser | None
) -> OutputSpec:
    """The request's ``response_format``, ``tools`` and ``tool_choice`` checked against what the engine can do."""
    structured = _response_format(req, capabilities)
    tools = template_tools(req)
    if not tools:
        return OutputSpec(structured=structured)
    choice = req.tool_choice if req.tool_choice is not None else "auto"
    if choice == "none":
        return OutputSpec(structured=structured, tools=tuple(tools))
    if structured is not None:
        raise InvalidRequestError(
            "response_format cannot be combined with tools unless tool_choice is 'none'.", param="response_format"
        )
    if choice == "auto":
        if parser is None:
            raise InvalidRequestError(
                "tool_choice 'auto' needs the model's tool-call parser: start the server with --tool-call-parser "
                "NAME (e.g. hermes), or force a call with tool_choice 'required' or "
                '{"type": "function", "function": {"name": ...}}.',
                param="tool_choice",
            )
        return OutputSpec(tools=tuple(tools), mode="auto", parser=parser)
    _needs_constraints(capabilities, "tool_choice", f"tool_choice {json.dumps(_choice_repr(choice))}")
    if choice == "required":
        schema = required_calls_schema(tools, parallel=req.parallel_tool_calls is not False)
        return OutputSpec(_schema(schema), tuple(tools), "required")
    name = choice.function.name
    tool = next(t for t in tools if t["function"]["name"] == name)  # the wire model checked that it is there
    return OutputSpec(_schema(named_call_schema(tool)), tuple(tools), "named", name)


def apply_output_spec(ctx: RequestContext, spec: OutputSpec) -> None:
    """Constrain the request's sampling to the spec; answers read for tool calls go out whole, not token by token."""
    check_strategy(spec, ctx.plan)
    ctx.output = spec
    if spec.structured is not None:
        ctx.params = dataclasses.replace(ctx.params, structured=spec.structured)
    if spec.reads_calls:
        if ctx.top_k or ctx.params.logprobs is not None:
            raise InvalidRequestError("logprobs are not returned together with tool calls.", param="logprobs")
        if ctx.continuous_usage:
            raise InvalidRequestError(
                "stream_options.continuous_usage_stats needs a plain token stream; answers read for tool calls are "
                "sent whole.",
                param="stream_options",
            )
        ctx.plan.whole_answers = True


def message_fields(answer: Answer) -> dict[str, Any]:
    """The ``content`` and ``tool_calls`` of a choice's message."""
    calls = [ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in answer.calls]
    return {"content": answer.content, "tool_calls": calls or None}


def delta_tool_calls(answer: Answer) -> list[DeltaToolCall]:
    """An answer's calls as stream deltas: each whole, in one piece."""
    return [
        DeltaToolCall(index=i, id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
        for i, c in enumerate(answer.calls)
    ]


def template_tools(req: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tool definitions the chat template shows the model."""
    return [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None


def check_strategy(spec: OutputSpec, plan: StrategyPlan) -> None:
    """Refuse a strategy that cannot keep the constraint on every candidate (step searches continue partial text)."""
    if spec.structured is None or plan.strategy.keeps_constraints:
        return
    param = "tool_choice" if spec.mode in ("required", "named") else "response_format"
    raise InvalidRequestError(
        f"Strategy '{plan.name}' continues or rewrites partial answers, so it cannot keep every candidate to the "
        f"{param} constraint; use none, best_of_n, self_consistency or compute_optimal.",
        param=param,
    )


def template_messages(messages: list[dict[str, Any]], wire: list[ChatMessage]) -> list[dict[str, Any]]:
    """The chat-template messages with the tool fields of their wire messages (calls made, call ids answered)."""
    if len(messages) != len(wire):
        return messages
    out = []
    for message, source in zip(messages, wire, strict=True):
        message = dict(message)
        if source.tool_calls:
            message["tool_calls"] = [_template_call(c) for c in source.tool_calls]
        if source.tool_call_id is not None:
            message["tool_call_id"] = source.tool_call_id
        if source.name is not None and source.role == "tool":
            message["name"] = source.name
        out.append(message)
    return out


def _template_call(call: Any) -> dict[str, Any]:
    """A call as chat templates read it: arguments as an object (``tojson`` in the template), as vLLM passes them."""
    try:
        arguments = json.loads(call.function.arguments)
    except ValueError:
        arguments = call.function.arguments
    return {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": arguments}}


def _response_format(req: ChatCompletionRequest, capabilities: EngineCapabilities) -> StructuredOutput | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    _needs_constraints(capabilities, "response_format", f"response_format '{fmt.type}'")
    if fmt.type == "json_object":
        return StructuredOutput(json_object=True)
    assert fmt.json_schema is not None  # the wire model requires it for this type
    return _schema(fmt.json_schema.schema_)


def _needs_constraints(capabilities: EngineCapabilities, param: str, what: str) -> None:
    if not capabilities.structured_outputs:
        raise InvalidRequestError(
            f"{what} needs constrained decoding (structured outputs), which this engine does not do; serve the model "
            "with --engine vllm, with --engine hf and xgrammar installed, or in front of a server that does "
            "(--engine openai).",
            param=param,
        )


def _schema(schema: dict[str, Any]) -> StructuredOutput:
    return StructuredOutput(json_schema=json.dumps(schema, sort_keys=True))


def _choice_repr(choice: Any) -> Any:
    return choice if isinstance(choice, str) else choice.model_dump()
