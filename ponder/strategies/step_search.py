"""The step-search core of beam_search, dvts, mcts and tree_of_thoughts: grow, finish and score partial solutions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field

from ponder.core.reasoning import THINK_CLOSE
from ponder.core.types import Budget, FinishReason, Prompt, Sample
from ponder.strategies.base import GREEDY_SAMPLING_TEMPERATURE, StrategyRequest, gather
from ponder.strategies.meter import BudgetExhausted, MeteredEngine, MeteredVerifier, is_step_end
from ponder.strategies.scoring import aggregate, score_candidates
from ponder.strategies.steps import extract_answer
from ponder.strategies.trace import Candidate, Trace

DEFAULT_SOLUTIONS = 16  # N when the budget sets no max_samples
# used when the request is greedy: identical continuations would make every path the same
DIVERSE_TEMPERATURE = GREEDY_SAMPLING_TEMPERATURE
Aggregation = Literal["min", "prod", "last", "mean"]
Extraction = Literal["content", "last_number", "boxed"]


def solutions_wanted(budget: Budget) -> int:
    """N, the finished solutions a step search aims for: budget.max_samples, else 16."""
    return budget.max_samples or DEFAULT_SOLUTIONS


def step_max_tokens_field() -> Any:
    return Field(64, ge=1, le=32768, description="Most tokens per step; a step hitting it ends its path ('length').")


def temperature_field() -> Any:
    return Field(
        None, ge=0.0, le=2.0, description=f"Sampling temperature; default the request's, or {DIVERSE_TEMPERATURE} if 0."
    )


def answer_extraction_field() -> Any:
    return Field(
        "content", description="What counts as the same answer: the visible content, its last number, or \\boxed{}."
    )


class StepSettings(Protocol):
    """The options every step search has (declared with the ``*_field`` helpers above)."""

    step_max_tokens: int
    temperature: float | None
    answer_extraction: Extraction


class Partial(Protocol):
    """A partial solution: the steps generated so far (separators excluded) and their tokens."""

    @property
    def pieces(self) -> tuple[str, ...]: ...

    @property
    def tokens(self) -> int: ...


def latest(pieces: Sequence[str], width: int = 60, think_close: str = THINK_CLOSE) -> str:
    """The last non-empty step (without the answer a final piece goes on to), shortened for a progress line."""
    steps = (p.partition(think_close)[0].strip() for p in reversed(pieces))
    step = next((p for p in steps if p), "")
    return step if len(step) <= width else step[: width - 3] + "..."


@dataclass
class Step:
    """One sampled next step of a partial solution."""

    piece: str  # the generated step, separator excluded
    sample: Sample
    tokens: int  # generated along the path, this step (and, once finished, its answer) included
    candidate: Candidate | None = None  # the finished solution, when this step ended it
    completed: bool = False  # the think block closed mid-step and a second call wrote the rest of the answer


class StepCore:
    """One request's step machinery: continue a partial solution from its cached prefix, finish it, score steps.

    Every finished candidate it registers is kept, in order, in ``finished``.
    """

    def __init__(
        self,
        options: StepSettings,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        trace: Trace,
        *,
        logprobs: bool = False,
    ) -> None:
        self.options = options
        self.request = request
        self.engine = engine
        self.verifier = verifier
        self.trace = trace
        self.format = request.format
        given = request.params.temperature
        temperature = options.temperature if options.temperature is not None else (given or DIVERSE_TEMPERATURE)
        # max_tokens caps whole solutions, not calls: it is applied along each path as a token_cap (see left()),
        # which never fails when a long path nears the context's end.
        self.params = dataclasses.replace(
            request.params, temperature=temperature, logprobs=0 if logprobs else None, max_tokens=None
        )
        self.sampled = 0  # step continuations generated
        self.calls = 0  # step calls made
        self.finished: list[Candidate] = []

    def prefix(self, path: Partial) -> str:
        return self.format.prefix(list(path.pieces))

    def prompt(self, path: Partial) -> Prompt:
        return self.request.prompt.continued(self.prefix(path))

    def left(self, tokens: int) -> int | None:
        """Tokens a path may still generate under the request's max_tokens (``None``: no limit)."""
        limit = self.request.params.max_tokens
        return None if limit is None else limit - tokens

    def stuck(self, path: Partial) -> bool:
        """Whether the request's max_tokens leaves this path nothing more to generate."""
        left = self.left(path.tokens)
        return left is not None and left <= 0

    def cap(self, *caps: int | None) -> int | None:
        known = [c for c in (*caps, self.params.token_cap) if c is not None]
        return min(known) if known else None

    async def step(self, path: Partial, n: int) -> list[Step]:
        """``n`` next steps of ``path`` in ONE extend call from its cached prefix, in sample order.

        A step that finishes the solution carries its candidate (unscored, not yet registered); one whose think
        block closed before the separator stopped it has the rest of its answer generated first.
        """
        cap = self.cap(self.options.step_max_tokens, self.left(path.tokens))
        params = dataclasses.replace(self.params, token_cap=cap)
        samples = await self.engine.extend(self.prompt(path), params, n)
        self.calls += 1
        self.sampled += len(samples)
        base = self.prefix(path)
        opened = [s for s in samples if is_step_end(s, self.engine.separator) and self.format.is_final(s.text)]
        completed = iter(await gather(*(self._complete(path, s) for s in opened)))
        steps = []
        for s in samples:
            step = Step(s.text, s, path.tokens + s.num_tokens)
            if not is_step_end(s, self.engine.separator):
                step.candidate = self.candidate(base + s.text, step.tokens, s.finish_reason)
            elif self.format.is_final(s.text):
                done = next(completed) or self.candidate(base + s.text + self.engine.separator, step.tokens, "length")
                step.candidate, step.tokens, step.completed = done, done.num_tokens, True
            steps.append(step)
        return steps

    async def _complete(self, path: Partial, piece: Sample) -> Candidate:
        """Generate the rest of an answer whose first line a step call stopped at; a budget cut leaves it truncated."""
        text = self.prefix(path) + piece.text + self.engine.separator
        tokens = path.tokens + piece.num_tokens
        left = self.left(tokens)
        if left is None or left > 0:
            params = dataclasses.replace(self.params, token_cap=self.cap(left))
            try:
                rest = await self.engine.generate(self.request.prompt.continued(text), params, 1)
            except BudgetExhausted:
                rest = []
            if rest:
                return self.candidate(text + rest[0].text, tokens + rest[0].num_tokens, rest[0].finish_reason)
        return self.candidate(text, tokens, "length")

    def close(self, path: Partial) -> Candidate:
        """An unfinished path as a ``length`` candidate (unscored, not yet registered)."""
        return self.candidate(self.prefix(path), path.tokens, "length")

    def candidate(self, text: str, tokens: int, finish_reason: FinishReason) -> Candidate:
        c = Candidate(text, tokens, finish_reason)
        c.answer = extract_answer(text, self.options.answer_extraction)
        return c

    def register(self, candidates: Sequence[Candidate | None]) -> None:
        """Put finished candidates on the trace (the pool a search cut short returns from)."""
        for c in candidates:
            if c is not None:
                self.finished.append(self.trace.add(c, message=""))

    async def score(self, candidates: Sequence[Candidate], aggregation: str) -> None:
        """Score finished candidates with the verifier in one call, then register them (even when cut short)."""
        try:
            await score_candidates(self.verifier, self.request, candidates, aggregation)
        finally:
            self.register(candidates)

    async def score_steps(
        self, texts: Sequence[str], finished: Sequence[Candidate | None], aggregation: str
    ) -> list[list[float]]:
        """Step scores of partial or finished solutions, in one batched verifier call.

        ``finished[i]`` is the candidate ``texts[i]`` is, or ``None`` for a partial one: candidates get their step
        scores and score (aggregated by ``aggregation``) and are registered even when the call is cut short.
        """
        with_answer = self.verifier is not None and self.verifier.scores_answer
        steps = [self.format.scored_steps(t, with_answer) for t in texts]
        asked = [i for i, s in enumerate(steps) if s]  # a path with no step yet has nothing to score
        scores: list[list[float]] = [[] for _ in steps]
        try:
            if asked and self.verifier is not None:
                got = await self.verifier.score_steps(self.request.problem, [steps[i] for i in asked])
                for i, s in zip(asked, got, strict=True):
                    scores[i] = s
            for c, s in zip(finished, scores, strict=True):
                if c is not None:
                    c.step_scores, c.score = s, aggregate(s, aggregation)
        finally:
            self.register(finished)
        return scores
