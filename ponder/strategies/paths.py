"""Paths for beam_search and dvts: partial solutions grown in rounds, every round scored in one verifier call."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from ponder.strategies.base import Options, Search, Strategy, StrategyResult, best_distinct, gather
from ponder.strategies.scoring import aggregate
from ponder.strategies.step_search import (
    Aggregation,
    Extraction,
    StepCore,
    answer_extraction_field,
    latest,
    step_max_tokens_field,
    temperature_field,
)
from ponder.strategies.trace import Candidate

MAX_PATHS = 4096


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
        return latest(self.pieces, width)


@dataclass
class Round:
    """One expansion round, per parent path: its unfinished children (scored) and the candidates it finished.

    ``children[i]`` is ``None`` when parent ``i`` was not expanded (no room left, or the budget refused the call).
    """

    children: list[list[Path] | None]
    finished: list[list[Candidate]]

    @property
    def new(self) -> list[Candidate]:
        return [c for done in self.finished for c in done]


class StepOptions(Options):
    """Options every step-level search shares."""

    expansions: int = Field(4, ge=1, le=256, description="Continuations sampled per kept path at each step.")
    max_steps: int = Field(40, ge=1, le=1000, description="Most rounds (steps) before unfinished paths are returned.")
    step_max_tokens: int = step_max_tokens_field()
    aggregation: Aggregation = Field(
        "last", description="How a partial path's step scores rank it: last (the latest step's score), min, prod, mean."
    )
    final_aggregation: Aggregation = Field(
        "min", description="How a finished solution's step scores become its score for the final choice."
    )
    temperature: float | None = temperature_field()
    answer_extraction: Extraction = answer_extraction_field()


class Paths(StepCore):
    """One request's paths: grow them a round at a time, score each round in one call, close the unfinished."""

    options: StepOptions

    async def expand(self, paths: Sequence[Path], counts: Sequence[int]) -> Round:
        """Continue each path by ``counts[i]`` samples at once, then score all new steps in one verifier call."""
        grown = await gather(*(self._grow(p, n) for p, n in zip(paths, counts, strict=True) if n > 0))
        outcomes = iter(grown)
        per_parent = [next(outcomes) if n > 0 else None for n in counts]
        children = [None if o is None else o[0] for o in per_parent]
        finished = [[] if o is None else o[1] for o in per_parent]
        kids = [k for ks in children if ks for k in ks]
        done = [c for d in finished for c in d]
        texts = [self.prefix(p) for p in kids] + [c.text for c in done]
        scores = await self.score_steps(texts, [None] * len(kids) + done, self.options.final_aggregation)
        how = self.options.aggregation
        ranked = zip(kids, scores[: len(kids)], strict=True)
        scored = iter(dataclasses.replace(p, step_scores=tuple(s), score=aggregate(s, how)) for p, s in ranked)
        return Round([None if ks is None else [next(scored) for _ in ks] for ks in children], finished)

    async def _grow(self, path: Path, n: int) -> tuple[list[Path], list[Candidate]]:
        if self.stuck(path):
            return [], [self.close(path)]  # max_tokens spent on its steps
        steps = await self.step(path, n)
        kids = [Path((*path.pieces, s.piece), s.tokens, tree=path.tree) for s in steps if s.candidate is None]
        # finished ones first, then those whose answer needed a second call
        done = [s.candidate for s in steps if s.candidate is not None and not s.completed]
        done += [s.candidate for s in steps if s.completed and s.candidate is not None]
        return kids, done

    def close_paths(self, paths: Sequence[Path]) -> list[Candidate]:
        """Unfinished paths as ``length`` candidates, for when the search stops before enough solutions finished."""
        closed = []
        for p in paths:
            c = self.close(p)
            c.step_scores = list(p.step_scores)
            c.score = aggregate(p.step_scores, self.options.final_aggregation)
            closed.append(c)
        self.register(closed)
        return closed

    def rank(self, candidate: Candidate) -> float:
        """A finished candidate's score on the scale partial paths are ranked by."""
        return aggregate(candidate.step_scores or [], self.options.aggregation)


@dataclass
class StepSearchResult(StrategyResult):
    """A step search's result with what the search did."""

    rounds: int = 0
    paths_expanded: int = 0
    finished: int = 0
    expansions: int = 0
    stop_reason: str | None = None


class PathSearch(Strategy):
    """Shared frame of the PRM-guided path searches (beam_search, dvts): needs, the round loop's bookkeeping."""

    needs_verifier = True
    needs_step_verifier = True
    needs_prefix_continuation = True
    Result = StepSearchResult

    def begin_paths(self, search: Search[StepSearchResult]) -> Paths:
        search.result.expansions = self.options.expansions
        return Paths(self.options, search.request, search.engine, search.verifier, search.trace)

    @staticmethod
    def record(result: StepSearchResult, paths: Paths, rounds: int, finished: int, stop: str | None) -> None:
        """Keep the figures current: a time cut can end the search anywhere."""
        result.rounds, result.paths_expanded, result.finished = rounds, paths.sampled, finished
        result.stop_reason = stop

    def end(
        self, search: Search[StepSearchResult], paths: Paths, left: Sequence[Path], finished: list[Candidate]
    ) -> list[Candidate]:
        """Close the best unfinished paths when too few solutions finished; the best distinct answers."""
        n, r = search.request.n, search.result
        if len(finished) < n and left and r.stop_reason != "enough":
            finished += paths.close_paths(sorted(left, key=lambda p: p.score, reverse=True)[: n - len(finished)])
        r.finished = len(finished)
        return best_distinct(finished, n)

    def finish(self, result: StepSearchResult, choices: list[Candidate], exhausted: str | None) -> StepSearchResult:
        if exhausted:
            result.stop_reason = exhausted
        return super().finish(result, choices, exhausted)


def unique(paths: Sequence[Path]) -> list[Path]:
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
