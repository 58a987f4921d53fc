"""Drawing whole solutions: the samples of one engine call as candidates on the request's trace."""

from __future__ import annotations

import asyncio

from ponder.core.types import Sample, SamplingParams
from ponder.strategies.base import Search
from ponder.strategies.meter import BudgetExhausted
from ponder.strategies.scoring import score_candidates
from ponder.strategies.trace import Candidate


async def draw(
    search: Search, params: SamplingParams, n: int, extraction: str = "content", *, first: bool = True
) -> list[Candidate]:
    """``n`` solutions of the request's prompt in one engine call, registered on the trace as they come back.

    A budget that refuses the call ends the draw with ``[]`` once earlier batches exist (``first=False``: they
    are kept), and is raised for the first one. Fewer than ``n`` come back when the sample budget is nearly spent.
    """
    try:
        samples = await search.engine.generate(search.request.prompt, params, n)
    except BudgetExhausted:
        if first:
            raise
        return []
    return [search.trace.add(Candidate.of(s, extraction), message="") for s in samples]


async def draw_scored(
    search: Search,
    params: SamplingParams,
    n: int,
    extraction: str = "content",
    aggregation: str = "min",
    *,
    first: bool = True,
) -> list[Candidate]:
    """:func:`draw`, the solutions scored by the request's verifier as soon as they finish.

    The samples are streamed from the engine, so the verifier reads the early finishers while the others are
    still generated, and only the last ones are left to score once the call returns. The candidates join the
    trace in sample order, as with ``draw``.
    """
    early: dict[int, Candidate] = {}
    scorer = _EarlyScorer(search, aggregation)

    def finished(index: int, sample: Sample) -> None:
        early[index] = Candidate.of(sample, extraction)
        scorer.add([early[index]])

    try:
        try:
            samples = await search.engine.generate(search.request.prompt, params, n, on_finish=finished)
        except BudgetExhausted:
            if first:
                raise
            return []
        batch = [early[i] if i in early else Candidate.of(s, extraction) for i, s in enumerate(samples)]
        scorer.add([c for i, c in enumerate(batch) if i not in early])  # cut by the deadline: never handed on
        await scorer.done()
    finally:
        scorer.cancel()  # an engine error or a cancelled request leaves no scoring behind
    return [search.trace.add(c, message="") for c in batch]


class _EarlyScorer:
    """Scores candidates as they are added: one verifier call at a time, over all that wait when it starts."""

    def __init__(self, search: Search, aggregation: str) -> None:
        self._search, self._aggregation = search, aggregation
        self._waiting: list[Candidate] = []
        self._tasks: list[asyncio.Task] = []

    def add(self, candidates: list[Candidate]) -> None:
        self._waiting += candidates
        if self._waiting and (not self._tasks or self._tasks[-1].done()):
            self._tasks.append(asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            await score_candidates(self._search.verifier, self._search.request, batch, self._aggregation)

    async def done(self) -> None:
        await asyncio.gather(*self._tasks)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
