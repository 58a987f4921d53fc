"""The model's own tool-call syntax, parsed by vLLM's tool parsers (``--tool-call-parser hermes``, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ponder.core.tools import ParsedTools, ToolCall


def tool_parser_names() -> list[str]:
    """The parser names vLLM knows (an empty list without vLLM)."""
    try:
        from vllm.tool_parsers.abstract_tool_parser import ToolParserManager
    except ImportError:
        return []
    return ToolParserManager.list_registered()


class VLLMToolParser:
    """A :class:`~ponder.core.tools.ToolCallParser` over one of vLLM's tool parsers and the model's tokenizer.

    vLLM's parsers read a whole completion given its chat request; the request is rebuilt here from the tool
    definitions, the only part of it they read.
    """

    def __init__(self, name: str, tokenizer: Any) -> None:
        try:
            from vllm.tool_parsers.abstract_tool_parser import ToolParserManager
        except ImportError as exc:
            raise ValueError(f"--tool-call-parser {name} needs vLLM (install ponder[cpu] or ponder[gpu])") from exc
        try:
            self._cls = ToolParserManager.get_tool_parser(name)
        except KeyError:
            valid = ", ".join(ToolParserManager.list_registered())
            raise ValueError(f"unknown --tool-call-parser {name!r}; vLLM knows {valid}") from None
        if tokenizer is None:
            raise ValueError(f"--tool-call-parser {name} needs the model's tokenizer (an in-process engine)")
        self.name = name
        self._tokenizer = tokenizer

    def parse(self, text: str, tools: Sequence[dict]) -> ParsedTools:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(
            model="ponder", messages=[{"role": "user", "content": ""}], tools=list(tools), tool_choice="auto"
        )
        parser = self._cls(self._tokenizer, request.tools)  # parsers keep per-call state: one per completion
        found = parser.extract_tool_calls(text, request)
        if not found.tools_called:
            return ParsedTools(content=text, calls=[])
        calls = [ToolCall(name=c.function.name, arguments=c.function.arguments or "{}") for c in found.tool_calls]
        return ParsedTools(content=found.content or None, calls=calls)
