"""The ``beam_search`` strategy: step-level beam search over partial solutions, ranked by a process reward model."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from ponder.strategies.base import Search
from ponder.strategies.paths import MAX_PATHS, Path, PathSearch, StepOptions, StepSearchResult, finished_note, unique
from ponder.strategies.registry import register
from ponder.strategies.step_search import solutions_wanted
from ponder.strategies.trace import Candidate


def spread(paths: int, total: int) -> list[int]:
    """``total`` continuations shared evenly over ``paths``, the better paths taking the remainder."""
    if paths <= 0:
        return []
    share, extra = divmod(max(total, 0), paths)
    return [share + (i < extra) for i in range(paths)]


@dataclass
class BeamSearchResult(StepSearchResult):
    """A beam search's result: the step search's figures and the beam width."""

    beam_width: int = 0


@register("beam_search")
class BeamSearch(PathSearch):
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

    Result = BeamSearchResult

    async def explore(self, search: Search[BeamSearchResult]) -> list[Candidate]:
        o, result, trace, meter = self.options, search.result, search.trace, search.engine.meter
        total = solutions_wanted(search.budget)
        width = result.beam_width = o.beam_width or max(1, total // o.expansions)
        paths = self.begin_paths(search)
        beams, finished, stop, rounds = [Path()], [], "max_steps", 0
        for step in range(1, o.max_steps + 1):
            rounds = step
            # Every round samples beam_width x expansions continuations (as search-and-learn does): when fewer
            # distinct paths survive, each gets more, so the compute per step, and its total, follow N.
            found = await paths.expand(beams, spread(len(beams), min(width * o.expansions, total - len(finished))))
            finished += found.new
            self.record(result, paths, step, len(finished), None)
            if all(kids is None for kids in found.children) and meter.exhausted:
                stop, rounds = meter.exhausted, step - 1  # nothing grew: keep the last beams to return
                break
            pool = unique([k for kids in found.children if kids for k in kids])
            beams = sorted(pool, key=lambda p: p.score, reverse=True)[:width]
            best = f"; best {beams[0].score:.2f}: {beams[0].latest()}" if beams else ""
            trace.emit(
                "step",
                f"step {step}: kept {len(beams)} of {len(pool)} paths{finished_note(found.new, len(finished), total)}"
                + best,
                step=step,
                kept=[{"steps": list(p.pieces), "score": p.score, "step_scores": list(p.step_scores)} for p in beams],
                pruned=len(pool) - len(beams),
                finished=[c.id for c in found.new],
            )
            if len(finished) >= total or not beams or meter.exhausted:
                stop = "enough" if len(finished) >= total else meter.exhausted or "no_paths"
                break
        self.record(result, paths, rounds, len(finished), stop)
        return self.end(search, paths, beams, finished)
