"""The ``x-ponder`` header: the ``ponder`` block for clients that drop unknown body fields (LangChain's ChatOpenAI)."""

from __future__ import annotations

import json

from ponder.server.headers import MAX_BYTES, ponder_header
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "2+3?"}]}


async def test_whole_responses_carry_the_block_without_its_trace():
    app, _ = fake_app(FakeEngine(lambda p, s, i: f"<think>try {i}</think>{i % 2}"))
    async with client(app) as c:
        plain = await c.post("/v1/chat/completions", json=BODY)
        searched = await c.post(
            "/v1/chat/completions",
            json={**BODY, "strategy": "self_consistency", "budget": {"max_samples": 3}, "return_trace": True},
        )
        streamed = await c.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert json.loads(plain.headers["x-ponder"]) == plain.json()["ponder"]
    block = searched.json()["ponder"]
    assert "trace" in block
    assert json.loads(searched.headers["x-ponder"]) == {k: v for k, v in block.items() if k != "trace"}
    assert "x-ponder" not in streamed.headers  # a stream's block is known only at its end: in its last chunk


def test_a_large_block_keeps_its_core_keys_within_the_limit():
    block = {"strategy": "mcts", "spent": {"samples": 4}, "tree": ["x" * 100] * 200}
    header = ponder_header(block)["x-ponder"]
    assert len(header) <= MAX_BYTES and json.loads(header) == {"strategy": "mcts", "spent": {"samples": 4}}
