"""Property: whatever a request asks for, it never makes the engine generate more than the server's ceilings.

A seeded random sweep over every strategy, effort knob, budget, ``n``, ``max_tokens`` and streaming, through the
app over a fake engine that counts what it generates. Requests the server refuses spend nothing.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import AsyncIterator

from ponder.core.types import EngineCapabilities, Prompt, SampleDelta, SamplingParams
from ponder.server.settings import Limits, ServerSettings
from ponder.testing import FakeEngine, RulePRM
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app

LIMITS = Limits(max_samples=6, max_tokens=300, max_n=4)
STRATEGIES = [
    None, "none", "best_of_n", "self_consistency", "beam_search", "dvts", "mcts", "tree_of_thoughts",
    "self_refine", "compute_optimal",
]  # fmt: skip
EFFORTS = [None, "none", "minimal", "low", "medium", "high", "auto"]
REQUESTS = 150


def rambling(prompt: Prompt, params: SamplingParams, index: int) -> str:
    """Solutions of a few steps, some of them very long, so that token limits bind."""
    seed = zlib.crc32(repr((prompt.messages, prompt.prefix, params.seed, index)).encode())
    rng = random.Random(seed)
    steps = [" ".join(f"w{rng.randint(0, 9)}" for _ in range(rng.choice([3, 8, 40, 200]))) for _ in range(3)]
    return "<think>" + "\n".join(steps) + f"\n</think>{rng.randint(0, 3)}"


class CountingEngine(FakeEngine):
    """A fake engine that counts every token and finished sequence it generates (``generate`` streams too)."""

    def __init__(self) -> None:
        super().__init__(rambling, capabilities=EngineCapabilities(max_model_len=4096))
        self.tokens = 0
        self.sequences = 0

    async def stream(self, prompt: Prompt, params: SamplingParams, n: int = 1) -> AsyncIterator[SampleDelta]:
        async for delta in super().stream(prompt, params, n):
            self.tokens += delta.num_tokens
            self.sequences += bool(delta.finish_reason)
            yield delta


def random_request(rng: random.Random) -> dict:
    body: dict = {"model": "fake-model", "messages": [{"role": "user", "content": f"q{rng.randint(0, 99)}"}]}
    pick = {
        "strategy": rng.choice(STRATEGIES),
        "reasoning_effort": rng.choice(EFFORTS) if rng.random() < 0.3 else None,
        "thinking_budget": rng.choice([0, -1, rng.randint(1, 5000)]) if rng.random() < 0.2 else None,
        "n": rng.choice([None, 1, 2, 4]),
        "max_tokens": rng.choice([None, None, rng.randint(1, 3000)]),
        "temperature": rng.choice([None, 0.7]),
        "stream": rng.random() < 0.3,
    }
    body.update({k: v for k, v in pick.items() if v is not None})
    if rng.random() < 0.6:
        budget = {
            "max_samples": rng.choice([None, 1, 3, 50, 10**6]),
            "max_tokens": rng.choice([None, 5, 120, 10**6]),
        }
        body["budget"] = {k: v for k, v in budget.items() if v is not None}
    if body.get("strategy") in ("best_of_n", "beam_search", "dvts", "mcts", "tree_of_thoughts"):
        body["verifier"] = "rule_prm"
    return body


async def test_no_request_spends_more_than_the_server_ceilings():
    engine = CountingEngine()
    verifiers = VerifierSet([RulePRM()])
    app, _ = fake_app(engine, ServerSettings(limits=LIMITS), verifiers)
    rng = random.Random(20260101)
    statuses: dict[int, int] = {}
    async with client(app) as c:
        for _ in range(REQUESTS):
            body = random_request(rng)
            engine.tokens = engine.sequences = 0
            resp = await c.post("/v1/chat/completions", json=body)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            assert resp.status_code in (200, 400), (body, resp.text)
            assert engine.tokens <= LIMITS.max_tokens, (body, engine.tokens)
            if body.get("strategy") in (None, "none") and body.get("reasoning_effort") in (None, "none", "minimal"):
                assert engine.sequences <= LIMITS.max_samples, (body, engine.sequences)
            if resp.status_code == 200 and not body.get("stream"):
                spent = resp.json()["ponder"]["spent"]
                assert spent["samples"] <= LIMITS.max_samples and spent["tokens"] <= LIMITS.max_tokens, body
    assert statuses.get(200, 0) > REQUESTS // 2, statuses  # the sweep mostly exercises served requests
