"""The fake engine keeps the Engine contract the real ones keep."""

from __future__ import annotations

import asyncio

import pytest

from ponder.core.errors import InvalidRequestError, PromptTooLongError
from ponder.core.protocols import Engine, StepVerifier, Verifier, is_step_verifier
from ponder.core.types import EngineCapabilities, Prompt, SamplingParams
from ponder.engines.base import resolve_max_tokens
from ponder.testing import FakeEngine, RulePRM, TableVerifier

PROMPT = Prompt.chat([{"role": "user", "content": "hi"}])


def test_fake_is_an_engine():
    assert isinstance(FakeEngine(), Engine)


async def test_generate_and_stream_agree():
    engine = FakeEngine(lambda p, s, i: f"w{i} x y")
    samples = await engine.generate(PROMPT, SamplingParams(), n=2)
    texts = {0: "", 1: ""}
    finishes = {}
    async for d in engine.stream(PROMPT, SamplingParams(), n=2):
        texts[d.index] += d.text
        if d.finish_reason:
            finishes[d.index] = d.finish_reason
    assert [s.text for s in samples] == [texts[0], texts[1]] == ["w0 x y", "w1 x y"]
    assert finishes == {0: "stop", 1: "stop"}


async def test_cancel_leaves_nothing_active():
    engine = FakeEngine(lambda p, s, i: "t " * 1000, token_delay=0.001)
    task = asyncio.create_task(engine.generate(PROMPT, SamplingParams()))
    await asyncio.sleep(0.02)
    assert engine.active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.active == 0


def test_resolve_max_tokens():
    assert resolve_max_tokens(SamplingParams(), 10, 100) == 90
    assert resolve_max_tokens(SamplingParams(max_tokens=5), 10, 100) == 5
    with pytest.raises(PromptTooLongError) as info:
        resolve_max_tokens(SamplingParams(max_tokens=95), 10, 100)
    assert info.value.param == "max_tokens"
    with pytest.raises(PromptTooLongError):
        resolve_max_tokens(SamplingParams(), 100, 100)


async def test_logprob_limit_from_capabilities():
    engine = FakeEngine(capabilities=EngineCapabilities(max_model_len=64, max_top_logprobs=2))
    with pytest.raises(InvalidRequestError):
        await engine.generate(PROMPT, SamplingParams(logprobs=3))


async def test_fake_verifiers_declare_what_they_score():
    prm, table = RulePRM(), TableVerifier({"5": 0.9}, default=0.1)
    assert isinstance(prm, StepVerifier) and is_step_verifier(prm)
    assert isinstance(table, Verifier) and not is_step_verifier(table)
    assert await prm.score_steps("q", [["good 1", "bad 2", "other"]]) == [[0.75, 0.25, 0.3]]
    assert await prm.score("q", ["<think>good\nbad\n</think>5"]) == [0.25]  # the weakest step
    assert await table.score("q", ["<think>2+3=5\n</think>5", "<think>x</think>6"]) == [0.9, 0.1]
    assert table.calls == [["<think>2+3=5\n</think>5", "<think>x</think>6"]]
    with pytest.raises(AssertionError, match="whole-answer"):
        await RulePRM(steps_only=True).score("q", ["<think>good\n</think>5"])
    with pytest.raises(KeyError):
        await TableVerifier({"5": 0.9}).score("q", ["<think>x</think>6"])  # no default: a missing key fails
