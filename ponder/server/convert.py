"""Conversions from engine results to OpenAI wire objects (logprobs, usage)."""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.types import Sample, TokenLogprob
from ponder.server.protocol import (
    ChoiceLogprobs,
    CompletionLogprobs,
    CompletionTokensDetails,
    PromptTokensDetails,
    TokenLogprobOut,
    TopLogprob,
    UsageInfo,
)


def _top(token: str, logprob: float) -> TopLogprob:
    return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))


def chat_logprobs(tokens: Sequence[TokenLogprob] | None, top_k: int) -> ChoiceLogprobs | None:
    if tokens is None:
        return None
    content = [
        TokenLogprobOut(
            token=t.token,
            logprob=t.logprob,
            bytes=list(t.token.encode()),
            top_logprobs=[_top(tok, lp) for tok, lp in t.top[:top_k]],
        )
        for t in tokens
    ]
    return ChoiceLogprobs(content=content)


def completion_logprobs(
    tokens: Sequence[TokenLogprob] | None, top_k: int, offset: int = 0
) -> CompletionLogprobs | None:
    if tokens is None:
        return None
    out = CompletionLogprobs()
    for t in tokens:
        out.tokens.append(t.token)
        out.token_logprobs.append(t.logprob)
        out.top_logprobs.append(dict(t.top[:top_k]) if top_k else None)
        out.text_offset.append(offset)
        offset += len(t.token)
    return out


def usage_info(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning_tokens),
    )


def samples_usage(samples_per_prompt: Sequence[Sequence[Sample]]) -> UsageInfo:
    """Usage of one or more prompts' samples: each prompt counted once, every sample's tokens counted."""
    prompt = sum(samples[0].prompt_tokens for samples in samples_per_prompt if samples)
    cached = sum(samples[0].cached_tokens for samples in samples_per_prompt if samples)
    completion = sum(s.num_tokens for samples in samples_per_prompt for s in samples)
    return usage_info(prompt, completion, cached)
