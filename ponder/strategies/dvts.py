"""The ``dvts`` strategy: diverse verifier tree search, independent greedy PRM-guided subtrees run side by side."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ponder.strategies.base import Search
from ponder.strategies.paths import (
    MAX_PATHS,
    Path,
    Paths,
    PathSearch,
    Round,
    StepOptions,
    StepSearchResult,
    finished_note,
)
from ponder.strategies.registry import register
from ponder.strategies.scoring import confident, stop_score_field
from ponder.strategies.step_search import solutions_wanted
from ponder.strategies.trace import Candidate


def allocate(paths: int, expansions: int, room: int) -> list[int]:
    """Continuations per subtree, in order: ``expansions`` each until ``room`` (solutions still wanted) is used.

    Any continuation may finish its solution, so a round never asks for more than could still be accepted.
    """
    counts = []
    for _ in range(paths):
        n = max(0, min(expansions, room))
        counts.append(n)
        room -= n
    return counts


ADAPTIVE_WAVE = 4  # subtrees a wave when stop_score is set and wave_subtrees is not (16 samples' worth)


@dataclass
class DVTSResult(StepSearchResult):
    """A DVTS result: the step search's figures, the number of subtrees and the waves they ran in."""

    subtrees: int = 0
    waves: int = 0


@register("dvts")
class DVTS(PathSearch):
    """Diverse verifier tree search (Beeching et al. 2024, "Scaling test-time compute with open models"; HF
    search-and-learn).

    The N budget is split into N // ``expansions`` independent subtrees. Each round, every live subtree samples
    ``expansions`` next steps from its single path, all subtrees concurrently with one batched PRM call, and keeps
    only its own best child (by ``aggregation``), so a strong subtree never crowds out another and the answers
    stay diverse. A subtree ends when its best child is a finished solution (or none of its children is
    unfinished); every finished child is a candidate. It returns the best distinct answers by ``final_aggregation``.
    With ``stop_score`` the subtrees run in waves (``wave_subtrees`` at a time) and no wave starts once a finished
    solution scores that high: the subtrees are independent, so a wave is a smaller DVTS and stopping after it
    spends on each prompt only what its difficulty needs.
    """

    class Options(StepOptions):
        subtrees: int | None = Field(
            None,
            ge=1,
            le=MAX_PATHS,
            description="Independent subtrees; default max(1, N // expansions), N = budget.max_samples, else 16 "
            "(N also caps the finished solutions).",
        )
        stop_score: float | None = stop_score_field()
        wave_subtrees: int | None = Field(
            None,
            ge=1,
            le=MAX_PATHS,
            description=f"Subtrees run at a time, each wave after the last has ended; default all at once "
            f"({ADAPTIVE_WAVE} with stop_score).",
        )

    Result = DVTSResult

    async def explore(self, search: Search[DVTSResult]) -> list[Candidate]:
        o, result = self.options, search.result
        total = solutions_wanted(search.budget)
        trees = result.subtrees = o.subtrees or max(1, total // o.expansions)
        wave = o.wave_subtrees or (ADAPTIVE_WAVE if o.stop_score is not None else trees)
        paths = self.begin_paths(search)
        live: list[Path] = []
        finished: list[Candidate] = []
        stop, rounds = "max_steps", 0
        for first in range(0, trees, wave):
            best = confident(search.trace.candidates, o.stop_score)
            if best is not None:
                stop = "confident"
                search.trace.emit(
                    "stop",
                    f"best score {best.score:.3f} >= stop_score {o.stop_score} after {result.waves} waves",
                    score=best.score,
                    waves=result.waves,
                )
                break
            result.waves += 1
            live = [Path(tree=i) for i in range(first, min(first + wave, trees))]
            live, stop, rounds = await self._wave(search, paths, live, finished, total, rounds)
            if stop not in ("max_steps", "no_paths"):
                break  # enough solutions, or the budget ran out
        self.record(result, paths, rounds, len(finished), stop)
        return self.end(search, paths, live, finished)

    async def _wave(
        self,
        search: Search[DVTSResult],
        paths: Paths,
        live: list[Path],
        finished: list[Candidate],
        total: int,
        rounds: int,
    ) -> tuple[list[Path], str, int]:
        """Grow some subtrees until each has ended (finished solutions go into ``finished``): what is left
        unfinished, why it stopped, and the rounds run in all."""
        o, result, meter = self.options, search.result, search.engine.meter
        stop = "max_steps"
        for step in range(1, o.max_steps + 1):
            rounds += 1
            found = await paths.expand(live, allocate(len(live), o.expansions, total - len(finished)))
            finished += found.new
            live, ended = self._advance(paths, live, found)
            self.record(result, paths, rounds, len(finished), None)
            lead = max(live, key=lambda p: p.score, default=None)
            note = finished_note(found.new, len(finished), total)
            best_line = f"; best {lead.score:.2f}: {lead.latest()}" if lead else ""
            search.trace.emit(
                "step",
                f"step {step}: {len(live)} subtrees going on{note}{best_line}",
                step=step,
                paths=[
                    {"tree": p.tree, "steps": list(p.pieces), "score": p.score, "step_scores": list(p.step_scores)}
                    for p in live
                ],
                ended=ended,
                finished=[c.id for c in found.new],
            )
            if len(finished) >= total or not live or meter.exhausted:
                stop = "enough" if len(finished) >= total else meter.exhausted or "no_paths"
                break
        return live, stop, rounds

    @staticmethod
    def _advance(paths: Paths, live: list[Path], found: Round) -> tuple[list[Path], list[int]]:
        """Each subtree's own best child goes on; a subtree ends when a finished child is at least as good."""
        ended: list[int] = []
        grown: list[Path] = []
        for parent, kids, done in zip(live, found.children, found.finished, strict=True):
            if kids is None:  # not expanded this round: no room left, or the budget refused it
                grown.append(parent)
                continue
            best = max(kids, key=lambda p: p.score, default=None)
            if best is None or any(paths.rank(c) >= best.score for c in done):
                ended.append(parent.tree)
            else:
                grown.append(best)
        return grown, ended
