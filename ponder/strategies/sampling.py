"""Drawing whole solutions: the samples of one engine call as candidates on the request's trace."""

from __future__ import annotations

from ponder.core.types import SamplingParams
from ponder.strategies.base import Search
from ponder.strategies.meter import BudgetExhausted
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
