"""The strategy base: metering counts once and caps the budget; out of budget returns the best so far."""

from __future__ import annotations

import asyncio

import pytest

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, EngineCapabilities, Prompt, SamplingParams
from ponder.strategies.base import Strategy, StrategyRequest, best_distinct, gather
from ponder.strategies.meter import BudgetExhausted
from ponder.strategies.trace import Candidate, Trace
from ponder.testing import FakeEngine, RulePRM

PROMPT = Prompt.chat([{"role": "user", "content": "What is 2+3?"}])


class OneAtATime(Strategy):
    """Draws single samples until the budget stops it, scoring each by its index."""

    name = "one_at_a_time"

    async def search(self, request, engine, verifier, budget, trace):
        while True:
            [s] = await engine.generate(request.prompt, request.params, 1)
            trace.add(Candidate(s.text, s.num_tokens, s.finish_reason, score=len(trace.candidates)))


class Parallel(Strategy):
    name = "parallel"

    async def search(self, request, engine, verifier, budget, trace):
        async def one():
            [s] = await engine.generate(request.prompt, request.params, 1)
            return trace.add(Candidate(s.text, s.num_tokens))  # added as it finishes: kept if the budget ends

        found = await gather(*(one() for _ in range(8)))
        return [c for c in found if c is not None]


def numbered(prompt, params, index):
    return f"<think>step {index}\n</think>{index}"


def request(**kw) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(**kw))


async def test_sample_budget_is_exact_and_the_best_so_far_is_returned():
    engine = FakeEngine(numbered)
    result = await OneAtATime().run(request(), engine, None, Budget(max_samples=5))
    assert result.exhausted == "max_samples"
    assert result.spent.samples == 5 == len(engine.calls)
    assert result.choices[0].score == 4  # the best-scored of the five
    assert result.spent.tokens == sum(c.num_tokens for c in result.trace.candidates)


async def test_concurrent_calls_cannot_overspend_samples():
    engine = FakeEngine(numbered, token_delay=0.001)
    result = await Parallel().run(request(), engine, None, Budget(max_samples=3))
    assert result.spent.samples == 3
    assert len(engine.calls) == 3
    assert engine.active == 0  # the calls past the budget were never started or were cancelled


async def test_token_budget_clamps_max_tokens():
    engine = FakeEngine(lambda p, s, i: "a b c d e f g h")
    result = await OneAtATime().run(request(), engine, None, Budget(max_tokens=10))
    assert result.exhausted == "max_tokens"
    assert result.spent.tokens <= 10
    assert all(params.token_cap <= 10 for _, params, _ in engine.calls)


async def test_concurrent_calls_never_pass_the_servers_token_ceiling():
    """Eight calls at once, each allowed 6 tokens, under a ceiling of 20: they wait for each other, not overspend."""
    engine = FakeEngine(lambda p, s, i: "a b c d e f g h", token_delay=0.001)
    result = await Parallel().run(request(max_tokens=6), engine, None, Budget(), ceiling=Budget(max_tokens=20))
    assert result.spent.tokens <= 20 and result.exhausted == "max_tokens"
    assert result.spent.samples == 4  # 6 + 6 + 6, then the 2 tokens left: a fourth call capped to them
    assert [params.token_cap for _, params, _ in engine.calls][-1] == 2
    assert engine.active == 0


async def test_time_budget_returns_what_was_found():
    engine = FakeEngine(numbered, token_delay=0.01)
    result = await OneAtATime().run(request(), engine, None, Budget(max_seconds=0.3))
    assert result.exhausted == "max_seconds"
    assert result.choices and result.spent.seconds < 1.0
    assert engine.active == 0


async def test_nothing_generated_within_the_time_budget_is_an_empty_partial_answer_not_an_error():
    engine = FakeEngine(numbered, token_delay=0.2)
    result = await OneAtATime().run(request(), engine, None, Budget(max_seconds=0.05))
    assert result.exhausted == "max_seconds"
    assert [(c.text, c.finish_reason) for c in result.choices] == [("", "length")]
    assert engine.active == 0


async def test_a_call_cut_by_the_time_budget_keeps_what_it_generated():
    engine = FakeEngine(lambda p, s, i: "word " * 1000, token_delay=0.01)
    result = await OneAtATime().run(request(), engine, None, Budget(max_seconds=0.5))
    assert result.exhausted == "max_seconds" and result.spent.seconds < 0.9
    [best] = result.choices
    assert best.finish_reason == "length" and best.text.startswith("word word") and best.num_tokens > 1
    assert result.spent.tokens == best.num_tokens  # the cut call's tokens are counted
    assert all(params.deadline is not None for _, params, _ in engine.calls)


async def test_extend_counts_only_finished_solutions_as_samples():
    engine = FakeEngine(lambda p, s, i: "2+3=5\n</think>5" if not p.prefix.endswith("\n") else "</think>5")

    class TwoSteps(Strategy):
        name = "two_steps"

        async def search(self, request, engine, verifier, budget, trace):
            first = await engine.extend(request.prompt.continued("<think>"), request.params, 2)
            assert [s.stop_reason for s in first] == ["\n", "\n"]
            second = await engine.extend(request.prompt.continued("<think>2+3=5\n"), request.params, 2)
            return [trace.add(Candidate(s.text, s.num_tokens)) for s in second]

    result = await TwoSteps().run(request(), engine, None, Budget(max_samples=2))
    assert result.spent.samples == 2 and result.spent.sequences == 4


def test_missing_step_verifier_and_prefix_continuation_are_refused_up_front():
    class NeedsPRM(OneAtATime):
        name = "needs_prm"
        needs_step_verifier = True
        needs_prefix_continuation = True

    engine = FakeEngine(capabilities=EngineCapabilities(max_model_len=64, prefix_continuation=False))
    with pytest.raises(InvalidRequestError, match="step verifier") as err:
        NeedsPRM().check(engine, None)
    assert err.value.param == "verifier"

    with pytest.raises(InvalidRequestError, match="continues partial solutions"):
        NeedsPRM().check(engine, RulePRM())


async def test_gather_raises_the_real_error_and_cancels_the_rest():
    async def exhausted():
        raise BudgetExhausted("max_samples")

    assert await gather(asyncio.sleep(0, "done"), exhausted()) == ["done", None]

    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def broken():
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        await gather(slow(), broken())
    assert cancelled == [True]


def test_best_distinct_prefers_distinct_answers_then_fills():
    cands = [
        Candidate("<think></think>1", 1, score=0.9),
        Candidate("<think></think>1", 1, score=0.8),
        Candidate("<think></think>2", 1, score=0.1),
    ]
    assert [c.score for c in best_distinct(cands, 2)] == [0.9, 0.1]
    assert [c.score for c in best_distinct(cands, 3)] == [0.9, 0.1, 0.8]


async def test_live_trace_streams_progress_lines():
    trace = Trace(live=True)
    trace.add(Candidate("<think></think>7", 3, score=0.5))
    trace.emit("vote", "votes: 7 x1")
    trace.emit("quiet")  # no message: recorded only
    trace.close()
    assert [line async for line in trace.progress()] == ["candidate 1: answer 7 (score 0.500)", "votes: 7 x1"]
