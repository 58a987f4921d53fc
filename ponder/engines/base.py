"""Helpers shared by the engine implementations (the ``Engine`` protocol itself is in ``ponder.core.protocols``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from ponder.core.errors import InvalidRequestError, PromptTooLongError
from ponder.core.types import EngineCapabilities, Prompt, Sample, SampleDelta, SamplingParams


def greedy_fan_out(params: SamplingParams, n: int) -> bool:
    """Whether a call asks for several greedy samples: they are all the same, so one is decoded and copied
    (as OpenAI answers ``n > 1`` at temperature 0; vLLM's sampler refuses it)."""
    return params.temperature == 0 and n > 1


def copies(samples: list[Sample], n: int) -> list[Sample]:
    """The one greedy sample of a call as its ``n`` identical samples."""
    return [dataclasses.replace(samples[0]) for _ in range(n)]


async def copied_deltas(deltas: AsyncIterator[SampleDelta], n: int) -> AsyncIterator[SampleDelta]:
    """The deltas of one greedy sample as those of ``n`` identical samples; closing it closes ``deltas``."""
    async with contextlib.aclosing(deltas):  # type: ignore[type-var]
        async for delta in deltas:
            for index in range(n):
                yield dataclasses.replace(delta, index=index)


def render_chat(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt as text: chat template applied, continuing ``prompt.prefix`` when given."""
    if prompt.text is not None:
        return prompt.text
    messages = [dict(m) for m in prompt.messages or ()]
    extra = {"tools": [dict(t) for t in prompt.tools]} if prompt.tools else {}  # templates that know tools show them
    if prompt.prefix:
        messages.append({"role": "assistant", "content": prompt.prefix})
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False, continue_final_message=True, **extra
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


def checked_ids(ids: tuple[int, ...] | list[int], vocab: int) -> list[int]:
    """A token-id prompt, refused when empty or when an id is outside the model's vocabulary."""
    if not ids:
        raise InvalidRequestError("The prompt is empty.", param="prompt")
    bad = next((i for i in ids if not 0 <= i < vocab), None)
    if bad is not None:
        raise InvalidRequestError(f"Token id {bad} is not in this model's vocabulary (ids 0-{vocab - 1}).", "prompt")
    return list(ids)


def max_prompt_chars(tokenizer: Any, max_model_len: int) -> int:
    """The most characters a prompt that fits the context can have: every token is at most the vocabulary's
    longest token string, whose characters (bytes in byte-level BPE, pieces in SentencePiece) each stand for
    at least one character of text. A longer prompt is refused before it is tokenized at all."""
    longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
    return max_model_len * max(longest, 1)


def resolve_max_tokens(params: SamplingParams, prompt_tokens: int, max_model_len: int) -> int:
    """Tokens to generate: the request's ``max_tokens`` or what the context leaves; refuse what does not fit."""
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise PromptTooLongError(
            f"This model's maximum context length is {max_model_len} tokens, "
            f"but the prompt has {prompt_tokens} tokens.",
            param="messages",
        )
    if params.max_tokens is None:
        return room if params.token_cap is None else min(room, params.token_cap)
    if params.max_tokens > room:
        raise PromptTooLongError(
            f"This model's maximum context length is {max_model_len} tokens. "
            f"The prompt has {prompt_tokens} tokens and {params.max_tokens} more were requested "
            f"(max_tokens); at most {room} fit.",
            param="max_tokens",
        )
    return params.max_tokens if params.token_cap is None else min(params.max_tokens, params.token_cap)


def check_logprobs(params: SamplingParams, capabilities: EngineCapabilities) -> None:
    """Refuse logprob requests the engine cannot serve."""
    if params.logprobs is None:
        return
    if not capabilities.logprobs:
        raise InvalidRequestError("This engine does not return logprobs.", param="logprobs")
    if params.logprobs > capabilities.max_top_logprobs:
        raise InvalidRequestError(
            f"top_logprobs must be at most {capabilities.max_top_logprobs}.", param="top_logprobs"
        )
