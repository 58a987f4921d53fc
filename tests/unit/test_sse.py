"""SSE framing and stream merging."""

from __future__ import annotations

import asyncio
import json

import pytest

from ponder.server.sse import DONE, merge_streams, sse


def test_sse_frames_compact_json():
    assert sse({"a": 1, "b": "é"}) == 'data: {"a":1,"b":"é"}\n\n'
    assert DONE == "data: [DONE]\n\n"
    assert json.loads(sse([1, 2])[len("data: ") :]) == [1, 2]


async def _numbers(prefix: str, count: int, delay: float, closed: list):
    try:
        for i in range(count):
            await asyncio.sleep(delay)
            yield f"{prefix}{i}"
    finally:
        closed.append(prefix)


async def test_merge_interleaves_and_tags_items():
    closed: list[str] = []
    merged = merge_streams([_numbers("a", 3, 0.001, closed), _numbers("b", 2, 0.0015, closed)])
    items = [item async for item in merged]
    assert sorted(items) == [(0, "a0"), (0, "a1"), (0, "a2"), (1, "b0"), (1, "b1")]
    assert sorted(closed) == ["a", "b"]


async def test_closing_merge_early_closes_every_stream():
    closed: list[str] = []
    merged = merge_streams([_numbers("a", 100, 0.001, closed), _numbers("b", 100, 0.001, closed)])
    async for _ in merged:
        break
    await merged.aclose()
    assert sorted(closed) == ["a", "b"]


async def test_merge_propagates_errors():
    async def broken():
        yield 1
        raise ValueError("boom")

    closed: list[str] = []
    with pytest.raises(ValueError, match="boom"):
        async for _ in merge_streams([broken(), _numbers("a", 50, 0.001, closed)]):
            pass
    assert closed == ["a"]
