"""Engine-agnostic value types exchanged between the server, strategies and engines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class Prompt:
    """What to generate from: a chat (``messages``) or a raw completion prompt (``text``).

    ``prefix`` is a partial assistant turn; when non-empty the engine continues it
    (chat template with ``continue_final_message``) instead of opening a new turn.
    """

    messages: tuple[dict, ...] | None = None
    text: str | None = None
    prefix: str = ""
    tools: tuple[dict, ...] | None = None  # OpenAI tool definitions, rendered by the chat template

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError("Prompt needs exactly one of messages or text")

    @classmethod
    def chat(
        cls, messages: list[dict] | tuple[dict, ...], prefix: str = "", tools: list[dict] | None = None
    ) -> Prompt:
        return cls(messages=tuple(messages), prefix=prefix, tools=tuple(tools) if tools else None)

    @classmethod
    def raw(cls, text: str) -> Prompt:
        return cls(text=text)

    def continued(self, more: str) -> Prompt:
        """The same prompt with ``more`` appended to the partial assistant turn."""
        if self.text is not None:
            return Prompt(text=self.text + more)
        return Prompt(messages=self.messages, prefix=self.prefix + more, tools=self.tools)


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint the engine enforces on every generated token: JSON valid against a schema, or any JSON object.

    Generation is constrained from its first token, so a model that thinks before answering answers at once.
    """

    json_schema: str | None = None  # the JSON schema, JSON-encoded (the frozen params stay hashable)
    json_object: bool = False

    def __post_init__(self) -> None:
        if (self.json_schema is None) == (not self.json_object):
            raise ValueError("StructuredOutput needs exactly one of json_schema or json_object")


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings, in OpenAI's terms; engines translate them."""

    max_tokens: int | None = None  # None: whatever the context window leaves
    # A ceiling applied after fitting to the context (budgets set it): unlike max_tokens, never an error.
    token_cap: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # None: no logprobs; k >= 0: chosen token plus top-k
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    structured: StructuredOutput | None = None  # constrained decoding (response_format, forced tool calls)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its logprob and the top alternatives at that position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Sample:
    """One finished completion."""

    text: str
    num_tokens: int
    finish_reason: FinishReason
    prompt_tokens: int = 0
    cached_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None
    stop_reason: str | None = None  # the stop string that ended it, if any


@dataclass
class SampleDelta:
    """An increment of sample ``index`` while streaming; ``finish_reason`` set on its last delta."""

    index: int
    text: str
    num_tokens: int = 0  # tokens in this delta
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    stop_reason: str | None = None  # on the finishing delta: the stop string that ended it, if any


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do; the server refuses requests that need more."""

    max_model_len: int
    logprobs: bool = True
    max_top_logprobs: int = 20
    prefix_continuation: bool = True
    scoring: bool = True
    seed: bool = True
    penalties: bool = True
    structured_outputs: bool = False  # constrains generation to a JSON schema (StructuredOutput)
    # Prompts longer than this (characters) cannot fit the context whatever their tokens: refused untokenized.
    max_prompt_chars: int | None = None


@dataclass(frozen=True)
class Budget:
    """Compute a request may spend; ``None`` means unlimited (within server limits)."""

    max_samples: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None


@dataclass
class TraceEvent:
    """One step of a strategy's search, for ``return_trace`` and streamed progress."""

    kind: str
    data: dict = field(default_factory=dict)
