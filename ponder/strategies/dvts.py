"""The ``dvts`` strategy: diverse verifier tree search, independent greedy PRM-guided subtrees run side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ponder.core.types import Budget
from ponder.strategies.base import StrategyRequest, best_distinct
from ponder.strategies.beam_search import (
    MAX_PATHS,
    Path,
    StepExpander,
    StepOptions,
    StepSearch,
    StepSearchResult,
    finished_note,
    path_count,
)
from ponder.strategies.meter import MeteredEngine, MeteredVerifier, Spent
from ponder.strategies.registry import register
from ponder.strategies.trace import Candidate, Trace


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


@dataclass
class DVTSResult(StepSearchResult):
    subtrees: int = 0

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "subtrees": self.subtrees}


@register("dvts")
class DVTS(StepSearch):
    """Diverse verifier tree search (Beeching et al. 2024, "Scaling test-time compute with open models"; HF
    search-and-learn).

    The N budget is split into N // ``expansions`` independent subtrees. Each round, every live subtree samples
    ``expansions`` next steps from its single path, all subtrees concurrently with one batched PRM call, and keeps
    only its own best child (by ``aggregation``), so a strong subtree never crowds out another and the answers
    stay diverse. A subtree ends when its best child is a finished solution (or none of its children is
    unfinished); every finished child is a candidate. It returns the best distinct answers by ``final_aggregation``.
    """

    class Options(StepOptions):
        subtrees: int | None = Field(
            None,
            ge=1,
            le=MAX_PATHS,
            description="Independent subtrees; default max(1, N // expansions), N = budget.max_samples, else 16 "
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
        trees = o.subtrees or max(1, total // o.expansions)
        self._figures["subtrees"] = trees
        steps = StepExpander(o, request, engine, verifier, trace)
        live, finished, stop, rounds = [Path(tree=i) for i in range(trees)], [], "max_steps", 0
        for step in range(1, o.max_steps + 1):
            rounds = step
            found = await steps.expand(live, allocate(len(live), o.expansions, total - len(finished)))
            ended: list[int] = []
            grown: list[Path] = []
            for parent, kids, done in zip(live, found.children, found.finished, strict=True):
                finished += done
                if kids is None:  # not expanded this round: no room left, or the budget refused it
                    grown.append(parent)
                    continue
                best = max(kids, key=lambda p: p.score, default=None)
                if best is None or any(steps.rank(c) >= best.score for c in done):
                    ended.append(parent.tree)
                else:
                    grown.append(best)
            new = [c for done in found.finished for c in done]
            self._record(steps, step, len(finished), None)  # kept current: a time cut ends the search anywhere
            live = grown
            lead = max(live, key=lambda p: p.score, default=None)
            best_line = f"; best {lead.score:.2f}: {lead.latest()}" if lead else ""
            trace.emit(
                "step",
                f"step {step}: {len(live)} subtrees going on{finished_note(new, len(finished), total)}{best_line}",
                step=step,
                paths=[
                    {"tree": p.tree, "steps": list(p.pieces), "score": p.score, "step_scores": list(p.step_scores)}
                    for p in live
                ],
                ended=ended,
                finished=[c.id for c in new],
            )
            if len(finished) >= total or not live or engine.meter.exhausted:
                stop = "enough" if len(finished) >= total else engine.meter.exhausted or "no_paths"
                break
        if len(finished) < request.n and live and stop != "enough":
            finished += steps.close(sorted(live, key=lambda p: p.score, reverse=True)[: request.n - len(finished)])
        self._record(steps, rounds, len(finished), stop)
        return best_distinct(finished, request.n)

    def result(self, choices: list[Candidate], spent: Spent, trace: Trace, exhausted: str | None) -> DVTSResult:
        return DVTSResult(choices, spent, trace, exhausted, **self._figures_kw(exhausted))
