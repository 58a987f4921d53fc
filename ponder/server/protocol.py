"""Pydantic wire models of the OpenAI-compatible API, with Ponder's extension fields."""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ponder.core.errors import InvalidRequestError

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "auto"]
ThinkingLevel = Literal["minimal", "low", "medium", "high"]


class OpenAIModel(BaseModel):
    """Request models ignore fields they do not know, as OpenAI's own API does."""

    model_config = ConfigDict(extra="ignore")


_SURROGATE = re.compile("[\ud800-\udfff]")
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch's generators (vLLM, transformers) accept


def _surrogate_at(value: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str] | None:
    """Where in a decoded JSON body a string (or key) holds a lone UTF-16 surrogate, and the surrogate."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (path, found.group()) if found else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and (found := _SURROGATE.search(key)):
            return (*path, "<key>"), found.group()
        if (hit := _surrogate_at(item, (*path, str(key)))) is not None:
            return hit
    return None


def refuse_lone_surrogates(body: Any) -> None:
    """A 400 naming the field when any text of ``body`` holds a lone surrogate (``"\\ud800"`` in JSON).

    Such a string is not Unicode text: it cannot be tokenized, logged or sent back as UTF-8.
    """
    hit = _surrogate_at(body)
    if hit is not None:
        path, char = hit
        param = ".".join(path) or None
        raise InvalidRequestError(
            f"{param or 'body'}: contains a lone UTF-16 surrogate (U+{ord(char):04X}), which is not valid "
            "Unicode text; send well-formed UTF-8.",
            param=param,
        )


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | str  # the HTTP status, or a reason where one is named (invalid_thought_signature)


class ErrorResponse(BaseModel):
    error: ErrorInfo


class StreamOptions(StrictModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class BudgetModel(StrictModel):
    """Compute limits of one request; the server clamps them to its own maxima."""

    max_samples: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    reasoning_content: str | None = None
    thought_signature: str | None = None
    extra_content: dict[str, Any] | None = None  # Gemini's place for it: {"google": {"thought_signature": ...}}
    tool_calls: list[ToolCallOut] | None = None  # an assistant turn's calls, sent back with the tools' answers
    tool_call_id: str | None = None  # a tool turn: the call it answers

    @field_validator("content", mode="before")
    @classmethod
    def _only_text_parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(f"content parts of type {kind!r} are not supported; only 'text' is")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(OpenAIModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _a_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_json_schema(value)
        return value


class ToolDefinition(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    """``{"type": "function", "function": {"name": ...}}``: this function must be called."""

    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(OpenAIModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    """``text``, ``json_object`` (any JSON object) or ``json_schema`` (JSON valid against the schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema":
            if self.json_schema is None:
                raise ValueError("type 'json_schema' needs json_schema: {name, schema}")
            check_json_schema(self.json_schema.schema_)
        return self


def check_json_schema(schema: Any) -> None:
    """Refuse what is not a JSON schema (Draft 2020-12 meta-schema) with a message that says where."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise ValueError("a JSON schema must be an object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON schema at {where}: {exc.message}") from None


class PonderFields(OpenAIModel):
    """Ponder's extension fields (``extra_body`` in the openai SDK) and the sampling fields both APIs share."""

    model: str
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    strategy: str | None = None
    strategy_options: dict[str, Any] | None = None
    verifier: str | None = None
    budget: BudgetModel | None = None
    reasoning_effort: ReasoningEffort | None = None
    thinking_level: ThinkingLevel | None = None
    thinking_budget: int | None = Field(default=None, ge=-1)
    return_trace: bool = False

    @model_validator(mode="before")
    @classmethod
    def _well_formed_text(cls, data: Any) -> Any:
        refuse_lone_surrogates(data)  # raised as itself: FastAPI lets it through to the error handlers
        return data

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise ValueError("logit_bias is not supported")
        return value

    @model_validator(mode="after")
    def _one_effort_knob(self) -> PonderFields:
        if self.reasoning_effort is not None and self.thinking_level is not None:
            raise ValueError("set reasoning_effort or thinking_level, not both")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def stop_list(self) -> list[str]:
        return list(self.stop or [])  # normalised by the validator


class ChatCompletionRequest(PonderFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    include_reasoning: bool = True
    continue_final_message: bool = False
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs the last message to be from the assistant")
        self._check_tool_choice()
        return self

    def _check_tool_choice(self) -> None:
        names = [t.function.name for t in self.tools or []]
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise ValueError(
                f"tool_choice names function '{self.tool_choice.function.name}', which is not in tools "
                f"({', '.join(names) or 'none given'})"
            )
        if self.tool_choice == "required" and not names:
            raise ValueError("tool_choice 'required' needs tools")

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


TokenIds = list[Annotated[int, Field(ge=0, strict=True)]]


class CompletionRequest(PonderFields):
    # text, texts, one prompt's token ids, or several prompts' token ids (as OpenAI's API takes them)
    prompt: str | list[str] | TokenIds | list[TokenIds]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if any(isinstance(p, dict) and "role" in p for p in value):
            raise ValueError(
                "prompt is a list of chat messages; /v1/completions takes text or token ids: send the messages "
                "to /v1/chat/completions as 'messages'"
            )
        if not value or any(isinstance(p, list) and not p for p in value):
            raise ValueError("prompt must not be empty")
        kinds = {str if isinstance(p, str) else list if isinstance(p, list) else int for p in value}
        if len(kinds) > 1 or any(isinstance(p, bool | float) for p in value):
            raise ValueError(
                "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists"
            )
        ids = [i for p in value if not isinstance(p, str) for i in (p if isinstance(p, list) else [p])]
        if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in ids):
            raise ValueError("token ids must be non-negative integers")
        return value

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix is not supported")
        return value

    @model_validator(mode="after")
    def _best_of_is_n(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of other than n is not supported; use strategy 'best_of_n'")
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt: its text or its token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]


# ---- responses ----


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None  # the answer's tokens
    reasoning_content: list[TokenLogprobOut] | None = None  # the thinking tokens', apart (as in the message)


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class _Envelope(BaseModel):
    """The fields of every response and stream chunk, in wire order; each sets its ``object`` and ``choices``."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: UsageInfo | None = None
    system_fingerprint: str | None = None  # the server's, set on every response and stream chunk
    ponder: dict[str, Any] | None = None


class FunctionCallOut(BaseModel):
    name: str | None = None
    arguments: str = ""


class ToolCallOut(BaseModel):
    """A call the model made (also how a client sends it back on the assistant turn)."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallOut
    extra_content: dict[str, Any] | None = None  # Gemini's place for the thought signature of a call


class DeltaToolCall(ToolCallOut):
    index: int


class DeltaMessage(BaseModel):
    """A streamed piece of the assistant's message; unset keys are left out of the chunk."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    thought_signature: str | None = None  # streamed: on the choice's finishing chunk
    extra_content: dict[str, Any] | None = None  # the same signature where Gemini's OpenAI API puts it
    tool_calls: list[DeltaToolCall] | None = None  # streamed whole, each in one delta


class AssistantMessage(DeltaMessage):
    """The whole message of a chat choice."""

    role: Literal["assistant"] = "assistant"
    # left out of a message without calls, as OpenAI leaves it out
    tool_calls: list[ToolCallOut] | None = Field(default=None, exclude_if=lambda v: v is None)  # type: ignore[assignment]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None


class ChatCompletionResponse(_Envelope):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: UsageInfo


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None


class ChatCompletionChunk(_Envelope):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None


class CompletionResponse(_Envelope):
    """A completion, and also each chunk of a completion stream (as OpenAI sends them)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "ponder"
    root: str | None = None
    max_model_len: int | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
