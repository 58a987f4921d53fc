"""The ``none`` strategy: one sample per choice; the server streams it token by token from the engine."""

from __future__ import annotations

from ponder.strategies.base import Strategy, StrategyRequest
from ponder.strategies.registry import register
from ponder.strategies.trace import Candidate, Trace


@register("none")
class NoneStrategy(Strategy):
    """Plain decoding: ``n`` samples in one engine call, returned as they are."""

    streams_tokens = True
    samples_candidates = False  # n plain samples: a greedy request gets n greedy (identical) choices, as from OpenAI
    keeps_constraints = True

    async def search(self, request: StrategyRequest, engine, verifier, budget, trace: Trace) -> list[Candidate]:
        samples = await engine.generate(request.prompt, request.params, request.n)
        return [trace.add(Candidate.of(s)) for s in samples]
