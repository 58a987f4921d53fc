"""Tool calls: the parsed call, the parser protocol, and the JSON schemas that force a call by constrained decoding."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made; ``arguments`` is a JSON-encoded object, as OpenAI sends it."""

    name: str
    arguments: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")


@dataclass(frozen=True)
class ParsedTools:
    """A completion split into its visible content and the tool calls it makes."""

    content: str | None
    calls: list[ToolCall]


@runtime_checkable
class ToolCallParser(Protocol):
    """Finds the tool calls in a model's own call syntax (Hermes ``<tool_call>`` tags, Llama JSON, ...)."""

    name: str

    def parse(self, text: str, tools: Sequence[dict]) -> ParsedTools:
        """The calls in ``text`` (a whole completion, reasoning removed) given the request's tool definitions."""
        ...


def function_parameters(tool: dict) -> dict[str, Any]:
    """A tool's parameter schema (an empty object schema when it declares none)."""
    params = tool.get("function", {}).get("parameters")
    return params if params else EMPTY_OBJECT


def named_call_schema(tool: dict) -> dict[str, Any]:
    """What a forced call to ``tool`` must generate: its arguments object."""
    return function_parameters(tool)


def required_calls_schema(tools: Sequence[dict], parallel: bool = True) -> dict[str, Any]:
    """What ``tool_choice: "required"`` generates: a JSON array of ``{"name", "parameters"}`` calls (vLLM's form)."""
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t["function"]["name"]]},
                "parameters": function_parameters(t),
            },
            "required": ["name", "parameters"],
        }
        for t in tools
    ]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": calls} if len(calls) > 1 else calls[0]}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def parse_named_call(text: str, name: str) -> ToolCall:
    """A forced call: the generated text is the arguments object (kept as generated, even when cut short)."""
    return ToolCall(name=name, arguments=text.strip())


def parse_required_calls(text: str) -> list[ToolCall] | None:
    """The calls of a ``required`` completion; ``None`` when it is not the JSON array (e.g. cut by ``max_tokens``)."""
    try:
        calls = json.loads(text)
    except ValueError:
        return None
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        return None
    return [ToolCall(name=c["name"], arguments=json.dumps(c.get("parameters", {}), ensure_ascii=False)) for c in calls]
