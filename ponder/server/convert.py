"""Conversions from engine results to OpenAI wire objects (logprobs, usage)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ponder.core.reasoning import ThinkSplitter, thinking_chars
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


def _token_out(t: TokenLogprob, top_k: int) -> TokenLogprobOut:
    top = [_top(tok, lp) for tok, lp in t.top[:top_k]]
    return TokenLogprobOut(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()), top_logprobs=top)


def chat_logprobs(
    tokens: Sequence[TokenLogprob] | None, top_k: int, thinking: Sequence[TokenLogprob] | None = None
) -> ChoiceLogprobs | None:
    """``content`` covers the answer's tokens only; the thinking tokens' logprobs, when asked for, go apart."""
    if tokens is None:
        return None
    reasoning = [_token_out(t, top_k) for t in thinking] if thinking else None
    return ChoiceLogprobs(content=[_token_out(t, top_k) for t in tokens], reasoning_content=reasoning)


@dataclass(frozen=True)
class Thinking:
    """How a request's completions are read for thinking (``<think>...</think>``, see ``ThinkSplitter``):
    whether at all, the model's habits, and how to count the tokens of a text (``None``: no tokenizer here)."""

    parse: bool = True
    implicit_open: bool = False
    starts_in_reasoning: bool = False
    count: Callable[[str], int | None] | None = None

    def splitter(self) -> ThinkSplitter:
        return ThinkSplitter(starts_in_reasoning=self.starts_in_reasoning, implicit_open=self.implicit_open)

    def tokens(self, text: str, num_tokens: int) -> int:
        """The tokens of a completion spent thinking: those through its closing tag (OpenAI's reasoning tokens).

        Counted by the engine's tokenizer when there is one, else in proportion to the characters.
        """
        if not self.parse or not text:
            return 0
        span = thinking_chars(text, starts_in_reasoning=self.starts_in_reasoning, implicit_open=self.implicit_open)
        if span >= len(text) or span == 0:
            return num_tokens if span else 0
        counted = self.count(text[:span]) if self.count is not None else None
        return min(num_tokens, counted if counted is not None else round(num_tokens * span / len(text)))

    def split_logprobs(self, tokens: Sequence[TokenLogprob]) -> tuple[list[TokenLogprob], list[TokenLogprob]]:
        """A whole completion's token logprobs: (the thinking ones, the answer's)."""
        split = ThinkingLogprobs(self)
        split.add(tokens)
        return split.take(final=True)


class ThinkingLogprobs:
    """Tells a choice's thinking tokens from its answer's as they stream: a token is thinking when it begins
    before the answer does. A token waits until its text is told apart (a tag may still be coming)."""

    def __init__(self, thinking: Thinking) -> None:
        self._splitter = thinking.splitter() if thinking.parse else None
        self._pending: list[tuple[int, int, TokenLogprob]] = []  # start, end, token
        self._fed = 0

    def add(self, tokens: Sequence[TokenLogprob]) -> None:
        for t in tokens:
            self._pending.append((self._fed, self._fed + len(t.token), t))
            self._fed += len(t.token)
            if self._splitter is not None:
                self._splitter.feed(t.token)

    def take(self, final: bool = False) -> tuple[list[TokenLogprob], list[TokenLogprob]]:
        """The tokens told apart since the last call: (thinking, answer); ``final`` at the end of the choice."""
        if self._splitter is None:
            answer, self._pending = [t for _s, _e, t in self._pending], []
            return [], answer
        if final:
            self._splitter.flush()
        decided, answer_from = self._splitter.decided, self._splitter.content_start
        thinking, answer, kept = [], [], []
        for start, end, t in self._pending:
            if answer_from is not None and start >= answer_from:
                answer.append(t)
            elif answer_from is not None or end <= decided or final:
                thinking.append(t)
            else:
                kept.append((start, end, t))
        self._pending = kept
        return thinking, answer


def completion_logprobs(
    tokens: Sequence[TokenLogprob] | None, top_k: int, offset: int = 0
) -> CompletionLogprobs | None:
    if tokens is None:
        return None
    out = CompletionLogprobs()
    for t in tokens:
        out.tokens.append(t.token)
        out.token_logprobs.append(t.logprob)
        out.top_logprobs.append(dict(t.top[:top_k]) if top_k and t.logprob is not None else None)
        out.text_offset.append(offset)
        offset += len(t.token)
    return out


def echoed_logprobs(
    prompt: Sequence[TokenLogprob] | None, tokens: Sequence[TokenLogprob] | None, top_k: int, echoed: int
) -> CompletionLogprobs | None:
    """The logprobs of an echoed prompt's tokens (the first has none), then of the completion's after it."""
    generated = completion_logprobs(tokens, top_k, offset=echoed)
    head = completion_logprobs(prompt, top_k)
    if head is None or generated is None:
        return generated
    for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        getattr(head, name).extend(getattr(generated, name))
    return head


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


def samples_usage(samples_per_prompt: Sequence[Sequence[Sample]], thinking: Thinking | None = None) -> UsageInfo:
    """Usage of one or more prompts' samples: each prompt counted once, every sample's tokens counted, and
    (with ``thinking``) their thinking tokens as reasoning tokens."""
    prompt = sum(samples[0].prompt_tokens for samples in samples_per_prompt if samples)
    cached = sum(samples[0].cached_tokens for samples in samples_per_prompt if samples)
    completion = sum(s.num_tokens for samples in samples_per_prompt for s in samples)
    reasoning = sum(thinking.tokens(s.text, s.num_tokens) for ss in samples_per_prompt for s in ss) if thinking else 0
    return usage_info(prompt, completion, cached, reasoning)
