"""The ``beam_search`` strategy: step-level beam search over partial solutions, ranked by a process reward model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ponder.core.types import Budget, Prompt, Sample
from ponder.strategies.base import Options, Strategy, StrategyRequest, StrategyResult, best_distinct, gather
from ponder.strategies.meter import BudgetExhausted, MeteredEngine, MeteredVerifier, Spent, is_step_end
from ponder.strategies.registry import register
from ponder.strategies.scoring import aggregate
from ponder.strategies.steps import extract_answer
from ponder.strategies.trace import Candidate, Trace

DEFAULT_PATHS = 16  # N when the budget sets no max_samples
MAX_PATHS = 4096
DIVERSE_TEMPERATURE = 0.8  # used when the request is greedy: identical continuations would make every beam the same
Aggregation = Literal["min", "prod", "last", "mean"]
Extraction = Literal["content", "last_number", "boxed"]


def path_count(budget: Budget) -> int:
    """N, the finished solutions a step search aims for: budget.max_samples, else 16."""
    return budget.max_samples or DEFAULT_PATHS


def spread(paths: int, total: int) -> list[int]:
    """``total`` continuations shared evenly over ``paths``, the better paths taking the remainder."""
    if paths <= 0:
        return []
    share, extra = divmod(max(total, 0), paths)
    return [share + (i < extra) for i in range(paths)]


@dataclass(frozen=True)
class Path:
    """A partial solution: the step pieces generated so far (separators excluded), their cost and PRM scores."""

    pieces: tuple[str, ...] = ()
    tokens: int = 0
    step_scores: tuple[float, ...] = ()
    score: float = 0.0  # step scores aggregated by the ranking ``aggregation``
    tree: int = 0  # the DVTS subtree it grows in

    def latest(self, width: int = 60) -> str:
        """The last non-empty step, shortened for a progress line."""
        step = next((p.strip() for p in reversed(self.pieces) if p.strip()), "")
        return step if len(step) <= width else step[: width - 3] + "..."


@dataclass
class Round:
    """One expansion round, per parent path: its unfinished children (scored) and the candidates it finished.

    ``children[i]`` is ``None`` when parent ``i`` was not expanded (no room left, or the budget refused the call).
    """

    children: list[list[Path] | None]
    finished: list[list[Candidate]]


class StepOptions(Options):
    """Options every step-level search shares."""

    expansions: int = Field(4, ge=1, le=256, description="Continuations sampled per kept path at each step.")
    max_steps: int = Field(40, ge=1, le=1000, description="Most rounds (steps) before unfinished paths are returned.")
    step_max_tokens: int = Field(
        64, ge=1, le=32768, description="Most tokens per step; a step hitting it ends its path ('length')."
    )
    aggregation: Aggregation = Field(
        "last", description="How a partial path's step scores rank it: last (the latest step's score), min, prod, mean."
    )
    final_aggregation: Aggregation = Field(
        "min", description="How a finished solution's step scores become its score for the final choice."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description=f"Sampling temperature; default the request's, or {DIVERSE_TEMPERATURE} if 0."
    )
    answer_extraction: Extraction = Field(
        "content", description="What counts as the same answer: the visible content, its last number, or \\boxed{}."
    )


class StepExpander:
    """One request's step machinery: grow paths by one step, finish final answers, score each round in one call."""

    def __init__(
        self,
        options: StepOptions,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        trace: Trace,
    ) -> None:
        self.options = options
        self.request = request
        self.engine = engine
        self.verifier = verifier
        self.trace = trace
        self.format = request.format
        given = request.params.temperature
        temperature = options.temperature if options.temperature is not None else (given or DIVERSE_TEMPERATURE)
        # max_tokens caps whole solutions, not calls: it is applied along each path (see _left) as a token_cap,
        # which never fails when a long path nears the context's end.
        self.params = dataclasses.replace(request.params, temperature=temperature, logprobs=None, max_tokens=None)
        self.expanded = 0  # step continuations generated

    def prefix(self, path: Path) -> str:
        return self.format.prefix(list(path.pieces))

    def prompt(self, path: Path) -> Prompt:
        return self.request.prompt.continued(self.prefix(path))

    async def expand(self, paths: Sequence[Path], counts: Sequence[int]) -> Round:
        """Continue each path by ``counts[i]`` samples at once, then score all new steps in one verifier call."""
        grown = await gather(*(self._grow(p, n) for p, n in zip(paths, counts, strict=True) if n > 0))
        outcomes = iter(grown)
        per_parent = [next(outcomes) if n > 0 else None for n in counts]
        children = [None if o is None else o[0] for o in per_parent]
        finished = [[] if o is None else o[1] for o in per_parent]
        scored = await self._score([k for kids in children if kids for k in kids], [c for d in finished for c in d])
        it = iter(scored)
        children = [None if kids is None else [next(it) for _ in kids] for kids in children]
        return Round(children, finished)

    def close(self, paths: Sequence[Path]) -> list[Candidate]:
        """Unfinished paths as ``length`` candidates, for when the search stops before enough solutions finished."""
        closed = []
        for p in paths:
            c = self._candidate(self.prefix(p), p.tokens, "length")
            c.step_scores = list(p.step_scores)
            c.score = aggregate(p.step_scores, self.options.final_aggregation)
            closed.append(self.trace.add(c, message=""))
        return closed

    def rank(self, candidate: Candidate) -> float:
        """A finished candidate's score on the scale partial paths are ranked by."""
        return aggregate(candidate.step_scores or [], self.options.aggregation)

    def _left(self, tokens: int) -> int | None:
        """Tokens a path may still generate under the request's max_tokens (``None``: no limit)."""
        limit = self.request.params.max_tokens
        return None if limit is None else limit - tokens

    def _cap(self, *caps: int | None) -> int | None:
        known = [c for c in (*caps, self.params.token_cap) if c is not None]
        return min(known) if known else None

    async def _grow(self, path: Path, n: int) -> tuple[list[Path], list[Candidate]]:
        left = self._left(path.tokens)
        if left is not None and left <= 0:
            return [], [self._candidate(self.prefix(path), path.tokens, "length")]  # max_tokens spent on its steps
        params = dataclasses.replace(self.params, token_cap=self._cap(self.options.step_max_tokens, left))
        samples = await self.engine.extend(self.prompt(path), params, n)
        self.expanded += len(samples)
        kids, done, open_answers = [], [], []
        for s in samples:
            if not is_step_end(s, self.engine.separator):
                done.append(self._candidate(self.prefix(path) + s.text, path.tokens + s.num_tokens, s.finish_reason))
            elif self.format.is_final(s.text):
                open_answers.append(s)  # the think block closed, then the answer went on past a separator
            else:
                kids.append(Path((*path.pieces, s.text), path.tokens + s.num_tokens, tree=path.tree))
        if open_answers:
            done += await gather(*(self._complete(path, s) for s in open_answers))
        return kids, done

    async def _complete(self, path: Path, piece: Sample) -> Candidate:
        """Generate the rest of an answer whose first line a step call stopped at; a budget cut leaves it truncated."""
        text = self.prefix(path) + piece.text + self.engine.separator
        tokens = path.tokens + piece.num_tokens
        left = self._left(tokens)
        if left is None or left > 0:
            params = dataclasses.replace(self.params, token_cap=self._cap(left))
            try:
                rest = await self.engine.generate(self.request.prompt.continued(text), params, 1)
            except BudgetExhausted:
                rest = []
            if rest:
                return self._candidate(text + rest[0].text, tokens + rest[0].num_tokens, rest[0].finish_reason)
        return self._candidate(text, tokens, "length")

    def _candidate(self, text: str, tokens: int, finish_reason: Any) -> Candidate:
        c = Candidate(text, tokens, finish_reason)
        c.answer = extract_answer(text, self.options.answer_extraction)
        return c

    async def _score(self, paths: list[Path], finished: list[Candidate]) -> list[Path]:
        """Step scores for new partial paths and finished candidates, in one batched verifier call.

        Finished candidates are registered on the trace even when the call is cut short, so a time budget keeps them.
        """
        steps = [self.format.steps(self.prefix(p)) for p in paths] + [self.format.steps(c.text) for c in finished]
        asked = [i for i, s in enumerate(steps) if s]  # a path with no step yet has nothing to score
        scores: list[list[float]] = [[] for _ in steps]
        try:
            if asked and self.verifier is not None:
                got = await self.verifier.score_steps(self.request.problem, [steps[i] for i in asked])
                for i, s in zip(asked, got, strict=True):
                    scores[i] = s
            for c, s in zip(finished, scores[len(paths) :], strict=True):
                c.step_scores = s
                c.score = aggregate(s, self.options.final_aggregation)
        finally:
            for c in finished:
                self.trace.add(c, message="")
        how = self.options.aggregation
        return [
            dataclasses.replace(p, step_scores=tuple(s), score=aggregate(s, how))
            for p, s in zip(paths, scores[: len(paths)], strict=True)
        ]


@dataclass
class StepSearchResult(StrategyResult):
    """A step search's result with what the search did."""

    rounds: int = 0
    paths_expanded: int = 0
    finished: int = 0
    expansions: int = 0
    stop_reason: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "paths_expanded": self.paths_expanded,
            "finished": self.finished,
            "expansions": self.expansions,
            "stop_reason": self.stop_reason,
        }


@dataclass
class BeamSearchResult(StepSearchResult):
    beam_width: int = 0

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "beam_width": self.beam_width}


class StepSearch(Strategy):
    """Shared frame of the PRM-guided step searches: needs, per-request figures, the typed result."""

    needs_verifier = True
    needs_step_verifier = True
    needs_prefix_continuation = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._figures: dict[str, Any] = {"rounds": 0, "paths_expanded": 0, "finished": 0, "stop_reason": None}

    def _record(self, steps: StepExpander, rounds: int, finished: int, stop: str | None) -> None:
        self._figures.update(rounds=rounds, paths_expanded=steps.expanded, finished=finished, stop_reason=stop)

    def _figures_kw(self, exhausted: str | None) -> dict[str, Any]:
        figures = dict(self._figures)
        if exhausted:
            figures["stop_reason"] = exhausted
        return {**figures, "expansions": self.options.expansions}


def _unique(paths: Sequence[Path]) -> list[Path]:
    """Paths with distinct text (sampling can repeat a step); the first of each is kept."""
    seen: dict[tuple[str, ...], Path] = {}
    for p in paths:
        seen.setdefault(p.pieces, p)
    return list(seen.values())


def finished_note(new: Sequence[Candidate], finished: int, total: int) -> str:
    if not new:
        return ""
    best = max(new, key=lambda c: c.score if c.score is not None else float("-inf"))
    score = "unscored" if best.score is None else f"{best.score:.2f}"
    return f", {len(new)} finished ({finished} of {total}; best {score}: answer {best.answer})"


@register("beam_search")
class BeamSearch(StepSearch):
    """Step-level beam search guided by a process reward model (Snell et al. 2024, "Scaling LLM Test-Time Compute
    Optimally can be More Effective than Scaling Model Parameters"; HF search-and-learn).

    From the opened think block, each round continues every kept path (beam) by ``expansions`` sampled steps
    (the round's beam_width x expansions spread over fewer paths when fewer survive), concurrently, each call
    sharing its path as a cached prefix. Continuations that close the reasoning (or stop)
    become candidates; the others are scored by the PRM in one batched call and the ``beam_width`` best distinct
    paths (by ``aggregation``, the latest step's score by default) go on. The search stops when N solutions have
    finished, no path is left, or after ``max_steps``; it returns the best distinct answers by ``final_aggregation``.
    """

    class Options(StepOptions):
        beam_width: int | None = Field(
            None,
            ge=1,
            le=MAX_PATHS,
            description="Paths kept per step; default max(1, N // expansions), N = budget.max_samples, else 16 "
            "(N also caps the finished solutions).",
        )

    async def search(
        self,
        request: StrategyRequest,
        engine: MeteredEngine,
        verifier: MeteredVerifier | None,
        budget: Budget,
        trace: Trace,
    ) -> list[Candidate]:
        o = self.options
        total = path_count(budget)
        width = o.beam_width or max(1, total // o.expansions)
        self._figures["beam_width"] = width
        steps = StepExpander(o, request, engine, verifier, trace)
        beams, finished, stop, rounds = [Path()], [], "max_steps", 0
        for step in range(1, o.max_steps + 1):
            rounds = step
            # Every round samples beam_width x expansions continuations (as search-and-learn does): when fewer
            # distinct paths survive, each gets more, so the compute per step, and its total, follow N.
            found = await steps.expand(beams, spread(len(beams), min(width * o.expansions, total - len(finished))))
            new = [c for done in found.finished for c in done]
            finished += new
            self._record(steps, step, len(finished), None)  # kept current: a time cut ends the search anywhere
            if all(kids is None for kids in found.children) and engine.meter.exhausted:
                stop, rounds = engine.meter.exhausted, step - 1  # nothing grew: keep the last beams to return
                break
            pool = _unique([k for kids in found.children if kids for k in kids])
            beams = sorted(pool, key=lambda p: p.score, reverse=True)[:width]
            best = f"; best {beams[0].score:.2f}: {beams[0].latest()}" if beams else ""
            trace.emit(
                "step",
                f"step {step}: kept {len(beams)} of {len(pool)} paths{finished_note(new, len(finished), total)}{best}",
                step=step,
                kept=[{"steps": list(p.pieces), "score": p.score, "step_scores": list(p.step_scores)} for p in beams],
                pruned=len(pool) - len(beams),
                finished=[c.id for c in new],
            )
            if len(finished) >= total or not beams or engine.meter.exhausted:
                stop = "enough" if len(finished) >= total else engine.meter.exhausted or "no_paths"
                break
        if len(finished) < request.n and beams and stop != "enough":
            finished += steps.close(beams[: request.n - len(finished)])
        self._record(steps, rounds, len(finished), stop)
        return best_distinct(finished, request.n)

    def result(self, choices: list[Candidate], spent: Spent, trace: Trace, exhausted: str | None) -> BeamSearchResult:
        return BeamSearchResult(choices, spent, trace, exhausted, **self._figures_kw(exhausted))
