"""Scripted, deterministic fakes for tests above the engine: an engine, a step verifier, a whole-answer verifier."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence

from ponder.core.aggregate import aggregate
from ponder.core.protocols import Problem
from ponder.core.reasoning import THINK_CLOSE
from ponder.core.streams import collect
from ponder.core.types import (
    EngineCapabilities,
    Prompt,
    Sample,
    SampleDelta,
    SamplingParams,
    TokenLogprob,
)
from ponder.engines.base import check_logprobs, resolve_max_tokens
from ponder.strategies.steps import StepFormat

Responder = Callable[[Prompt, SamplingParams, int], str]
TopLogprobs = Callable[[Prompt, str], Sequence[tuple[str, float]]]
_TOKEN = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[str]:
    """Fake tokens: words with their leading whitespace."""
    return _TOKEN.findall(text)


def _default_responder(prompt: Prompt, params: SamplingParams, index: int) -> str:
    last = prompt.messages[-1]["content"] if prompt.messages else prompt.text
    return f"<think>sample {index}</think>echo: {last}"


class FakeEngine:
    """Answers with ``responder(prompt, params, index)``, one word per token.

    ``token_delay`` seconds pass between tokens, so tests can cancel mid-generation;
    ``active`` counts requests still running (a cancelled request must leave it at 0).
    ``top_logprobs(prompt, token)``, when given, scripts the alternatives (best first) reported for each token.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        model_id: str = "fake-model",
        capabilities: EngineCapabilities | None = None,
        token_delay: float = 0.0,
        top_logprobs: TopLogprobs | None = None,
        cached_tokens: int = 0,
    ) -> None:
        self.model_id = model_id
        self.capabilities = capabilities or EngineCapabilities(max_model_len=512)
        self.responder = responder or _default_responder
        self.token_delay = token_delay
        self.top_logprobs = top_logprobs
        self.cached_tokens = cached_tokens  # reported as found in a prefix cache, on every delta
        self.active = 0
        self.calls: list[tuple[Prompt, SamplingParams, int]] = []
        self.closed = False

    def _prompt_token_texts(self, prompt: Prompt) -> list[str]:
        """A raw prompt's fake tokens: its words, or `` t<id>`` per token id."""
        if prompt.token_ids is not None:
            return [f" t{i}" for i in prompt.token_ids]
        return tokenize(prompt.text or "")

    def _prompt_logprobs(self, prompt: Prompt, k: int | None) -> list[TokenLogprob] | None:
        if k is None:
            return None
        scored = self._logprobs(self._prompt_token_texts(prompt), k, prompt) or []
        return [TokenLogprob(t.token, None) if i == 0 else t for i, t in enumerate(scored)]

    def _prompt_tokens(self, prompt: Prompt) -> int:
        if prompt.messages is None:
            return len(self._prompt_token_texts(prompt))
        body = " ".join(f"{m['role']}: {m['content']}" for m in prompt.messages or ())
        return len(tokenize(body + " " + prompt.prefix))

    def _plan(self, prompt: Prompt, params: SamplingParams, index: int) -> tuple[list[str], str, str | None]:
        """The tokens sample ``index`` will emit, its finish reason and the stop string hit."""
        max_tokens = resolve_max_tokens(params, self._prompt_tokens(prompt), self.capabilities.max_model_len)
        text = self.responder(prompt, params, index)
        stop_hit = None
        for stop in params.stop:
            cut = text.find(stop)
            if cut != -1 and (stop_hit is None or cut < text.find(stop_hit)):
                stop_hit = stop
        if stop_hit is not None:
            text = text[: text.find(stop_hit)]
        tokens = tokenize(text)
        if len(tokens) > max_tokens:
            return tokens[:max_tokens], "length", None
        return tokens, "stop", stop_hit

    def _logprobs(self, tokens: list[str], k: int | None, prompt: Prompt) -> list[TokenLogprob] | None:
        if k is None:
            return None
        out = []
        for i, tok in enumerate(tokens):
            lp = -0.1 * (i % 5 + 1)
            if self.top_logprobs is not None:
                scripted = tuple(self.top_logprobs(prompt, tok))
                out.append(TokenLogprob(tok, dict(scripted).get(tok, lp), scripted[:k]))
                continue
            top = tuple((f"{tok}#{j}" if j else tok, lp - j) for j in range(k))
            out.append(TokenLogprob(tok, lp, top))
        return out

    async def generate(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> list[Sample]:
        return await collect(self.stream(prompt, params, n), params, n)

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        check_logprobs(params, self.capabilities)
        plans = [self._plan(prompt, params, i) for i in range(n)]
        self.calls.append((prompt, params, n))
        prompt_tokens = self._prompt_tokens(prompt)
        prompt_logprobs = self._prompt_logprobs(prompt, params.prompt_logprobs)  # on the first delta
        self.active += 1
        try:
            longest = max((len(tokens) for tokens, _, _ in plans), default=0)
            for step in range(longest + 1):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                else:
                    await asyncio.sleep(0)
                for i, (tokens, reason, stop) in enumerate(plans):
                    if step < len(tokens):
                        lp = self._logprobs(tokens, params.logprobs, prompt)
                        yield SampleDelta(
                            index=i,
                            text=tokens[step],
                            num_tokens=1,
                            logprobs=[lp[step]] if lp else None,
                            prompt_tokens=prompt_tokens,
                            cached_tokens=self.cached_tokens,
                            prompt_logprobs=prompt_logprobs,
                        )
                        prompt_logprobs = None
                    if step == len(tokens):
                        yield SampleDelta(
                            index=i,
                            text="",
                            finish_reason=reason,
                            prompt_tokens=prompt_tokens,
                            stop_reason=stop,
                            cached_tokens=self.cached_tokens,
                            prompt_logprobs=prompt_logprobs,
                        )
                        prompt_logprobs = None
        finally:
            self.active -= 1

    def num_unfinished_requests(self) -> int:
        return self.active

    def count_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def decode(self, ids: list[int]) -> str:
        return "".join(f" t{i}" for i in ids)

    async def score(self, prompt: Prompt, continuation: str) -> list[float]:
        return [-0.5 for _ in tokenize(continuation)]

    async def aclose(self) -> None:
        self.closed = True


WORD_SCORES = {"best": 1.0, "good": 0.75, "ok": 0.5, "bad": 0.25, "wrong": 0.0}  # exact in binary: no float ties


class RulePRM:
    """A fake step verifier (PRM): a step scores ``rule(step)``, or the score of the first word of a table it holds.

    ``calls`` keeps the solutions (lists of steps) of every step-scoring call. A whole answer scores its steps'
    minimum, unless ``steps_only``: then asking for whole-answer scores fails the test (a step search must not).
    With ``scores_answer`` it declares that it reads a finished solution's answer (``</think>ANSWER``, last).
    """

    step_level = True

    def __init__(
        self,
        rule: Mapping[str, float] | Callable[[str], float] = WORD_SCORES,
        *,
        default: float = 0.3,
        name: str = "rule_prm",
        steps_only: bool = False,
        scores_answer: bool = False,
    ) -> None:
        self.rule = rule
        self.default = default
        self.name = name
        self.steps_only = steps_only
        self.scores_answer = scores_answer
        self.calls: list[list[list[str]]] = []

    def step_score(self, step: str) -> float:
        if callable(self.rule):
            return self.rule(step)
        return next((score for word, score in self.rule.items() if word in step), self.default)

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append([list(s) for s in solutions])
        return [[self.step_score(step) for step in steps] for steps in solutions]

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        if self.steps_only:
            raise AssertionError(f"{self.name} was asked for whole-answer scores; a step search asks for step scores")
        return [aggregate([self.step_score(s) for s in StepFormat().steps(a)], "min") for a in answers]


def after_think(answer: str) -> str:
    """The visible answer: what follows the think block."""
    return answer.rpartition(THINK_CLOSE)[2]


def tag(answer: str) -> int:
    """The number tagged ``#k`` in a completion (``"<think>try #3\n..."`` is 3)."""
    return int(answer.split("#")[1].split("\n")[0])


class TableVerifier:
    """A fake whole-answer verifier: an answer scores ``table[key(answer)]``, ``default`` when the key is absent.

    ``table`` maps keys to scores (a list maps its indices); the key is the visible answer unless ``key`` says
    otherwise. Without a ``default`` a missing key fails the test. ``calls`` keeps the answers of every call.
    """

    step_level = False

    def __init__(
        self,
        table: Mapping[Hashable, float] | Sequence[float],
        *,
        key: Callable[[str], Hashable] = after_think,
        default: float | None = None,
        name: str = "table",
    ) -> None:
        self.table: Mapping[Hashable, float] = table if isinstance(table, Mapping) else dict(enumerate(table))
        self.key = key
        self.default = default
        self.name = name
        self.calls: list[list[str]] = []

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        self.calls.append(list(answers))
        return [self._lookup(self.key(a)) for a in answers]

    def _lookup(self, key: Hashable) -> float:
        if key in self.table or self.default is None:
            return self.table[key]
        return self.default
