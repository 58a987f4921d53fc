"""A third-party strategy as a plugin package would ship it: not registered until the server loads it."""

from __future__ import annotations

from ponder.strategies.base import Strategy, StrategyRequest
from ponder.strategies.trace import Candidate, Trace


class Echo(Strategy):
    """Samples once per choice and returns the samples reversed (a plugin for the registry tests)."""

    name = "plugin_echo"

    async def search(self, request: StrategyRequest, engine, verifier, budget, trace: Trace) -> list[Candidate]:
        samples = await engine.generate(request.prompt, request.params, request.n)
        return [trace.add(Candidate(s.text[::-1], s.num_tokens, s.finish_reason)) for s in samples]
