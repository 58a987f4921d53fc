"""Wire models of the OpenAI Responses API (``POST /v1/responses``), stateless, with Ponder's extension fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ponder.server.protocol import OpenAIModel, PonderFields, ReasoningEffort

ENCRYPTED_REASONING = "reasoning.encrypted_content"
TEXT_PARTS = ("input_text", "output_text", "text")


class ContentPart(OpenAIModel):
    type: str
    text: str | None = None


class MessageItem(OpenAIModel):
    """A message input item (``type`` may be left out, as in the SDK's ``{"role", "content"}`` shorthand)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, value: str | list[ContentPart]) -> str | list[ContentPart]:
        if isinstance(value, list):
            for j, part in enumerate(value):
                if part.type not in TEXT_PARTS or part.text is None:
                    raise ValueError(f"content[{j}]: parts of type {part.type!r} are not supported; only text is")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class ReasoningItem(OpenAIModel):
    """A reasoning item sent back: its ``encrypted_content`` is the turn's thought signature."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None
    status: str | None = None


InputItem = MessageItem | ReasoningItem


class ReasoningConfig(OpenAIModel):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None  # the deprecated spelling


class ResponsesRequest(PonderFields):
    """``POST /v1/responses``: stateless (``store`` true, ``previous_response_id`` and tools are refused)."""

    input: str | list[InputItem]
    instructions: str | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    include: list[str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    stream_options: dict[str, Any] | None = None  # type: ignore[assignment]  # Responses' own (include_obfuscation)
    include_reasoning: bool = True

    @field_validator("input", mode="before")
    @classmethod
    def _typed_items(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if not value:
            raise ValueError("input must not be an empty list")
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValueError(f"input[{i}] must be an object")
            kind = item.get("type", "message" if "role" in item else None)
            if kind not in ("message", "reasoning"):
                raise ValueError(f"input[{i}]: items of type {kind!r} are not supported; only message and reasoning")
            items.append({**item, "type": kind})
        return items

    @field_validator("include")
    @classmethod
    def _known_include(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name != ENCRYPTED_REASONING:
                raise ValueError(f"{name!r} is not supported; only {ENCRYPTED_REASONING!r}")
        return value

    @field_validator("store")
    @classmethod
    def _stateless(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError(
                "this server keeps no responses: send store: false, and pass earlier output items (with "
                f"include: ['{ENCRYPTED_REASONING}']) back as input"
            )
        return value

    @field_validator("previous_response_id")
    @classmethod
    def _no_previous(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("this server keeps no responses: send the earlier output items back as input instead")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list | None) -> list | None:
        if value:
            raise ValueError("tools are not supported on /v1/responses")
        return value

    @field_validator("text")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        fmt = (value or {}).get("format") or {"type": "text"}
        if fmt.get("type") != "text":
            raise ValueError("only text.format {'type': 'text'} is supported")
        return value

    @model_validator(mode="after")
    def _one_effort(self) -> ResponsesRequest:
        if self.n != 1:
            raise ValueError("n: the Responses API returns one answer; use /v1/chat/completions for several")
        asked = self.reasoning.effort if self.reasoning else None
        if asked is not None and self.reasoning_effort is not None and asked != self.reasoning_effort:
            raise ValueError("reasoning.effort and reasoning_effort disagree; set one")
        return self

    @property
    def effort(self) -> str | None:
        return (self.reasoning.effort if self.reasoning else None) or self.reasoning_effort

    @property
    def summary(self) -> str | None:
        return (self.reasoning.summary or self.reasoning.generate_summary) if self.reasoning else None

    @property
    def encrypted(self) -> bool:
        return ENCRYPTED_REASONING in (self.include or ())


# ---- output ----


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: str = "completed"
    content: list[OutputText] = Field(default_factory=list)


class ReasoningText(BaseModel):
    type: Literal["reasoning_text", "summary_text"]
    text: str


class OutputReasoning(BaseModel):
    id: str
    type: Literal["reasoning"] = "reasoning"
    summary: list[ReasoningText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str = "completed"


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class ResponseObject(BaseModel):
    """A response, in the field order of OpenAI's, plus the ``ponder`` block."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"] = "completed"
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputReasoning | OutputMessage] = Field(default_factory=list)
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = Field(default_factory=dict)
    store: bool = False
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str = "none"
    tools: list[Any] = Field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    ponder: dict[str, Any] | None = None
    system_fingerprint: str | None = Field(default=None, exclude=True)  # set by the route; not a Responses field
