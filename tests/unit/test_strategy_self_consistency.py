"""self_consistency: majority and weighted votes, rounds that stop exactly when the vote is settled, the budget."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, EngineCapabilities, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.self_consistency import SelfConsistency, SelfConsistencyResult
from ponder.strategies.trace import Trace
from ponder.testing import FakeEngine, TableVerifier, tag

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+934?"}])


def sequence(answers):
    """Responder: the k-th sample drawn overall (across calls) answers ``answers[k % len]``, tagged ``#k``."""
    counter = itertools.count()

    def responder(prompt, params, index):
        k = next(counter)
        return f"<think>try #{k}\n</think>{answers[k % len(answers)]}"

    return responder


def request(n: int = 1) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(temperature=0.8), n=n)


def sc(**options) -> SelfConsistency:
    return SelfConsistency.from_request(options)


def messages(trace: Trace) -> list[str]:
    return [e.data["message"] for e in trace.events if e.data.get("message")]


async def test_majority_vote_ignores_unextractable_answers_and_returns_the_first_winner():
    answers = ["1401", "1301", "I am not sure", "1401", "141", "1401", "1301", "1401", "1401"]
    engine, trace = FakeEngine(sequence(answers)), Trace(keep=True)
    result = await sc(n_samples=9, round_size=9, answer_extraction="last_number").run(
        request(), engine, None, Budget(), trace
    )
    [choice] = result.choices
    assert choice.answer == "1401" and "#0\n" in choice.text  # the first of the winning answer
    assert isinstance(result, SelfConsistencyResult)
    summary = result.summary()
    assert summary["votes"] == {"1401": 5, "1301": 2, "141": 1}  # the text without a number cast no vote
    assert summary["samples"] == 9 and summary["stopped_early"] is False
    assert messages(trace) == ["votes after 9: 1401 x5, 1301 x2, 141 x1"]
    assert [n for _, _, n in engine.calls] == [9]


async def test_n_returns_the_top_answers_by_votes():
    answers = ["3", "4", "3", "5", "4", "3"]
    result = await sc(n_samples=6, round_size=6).run(request(n=2), FakeEngine(sequence(answers)), None, Budget())
    assert [c.answer for c in result.choices] == ["3", "4"]


async def test_verifier_weighted_vote_can_overturn_the_majority():
    answers = ["1", "1", "1", "2", "2"]
    verifier = TableVerifier([0.1, 0.2, 0.1, 0.8, 0.9], key=tag)
    result = await sc(n_samples=5, round_size=5, weighting="verifier").run(
        request(), FakeEngine(sequence(answers)), verifier, Budget()
    )
    choice = result.choices[0]
    assert choice.answer == "2" and choice.score == 0.9  # the best-scored solution of the winning answer
    assert result.votes == {"2": pytest.approx(1.7), "1": pytest.approx(0.4)}
    assert result.counts == {"2": 2, "1": 3}
    assert [len(call) for call in verifier.calls] == [5]
    majority = await sc(n_samples=5, round_size=5).run(request(), FakeEngine(sequence(answers)), None, Budget())
    assert majority.choices[0].answer == "1"


async def test_logprob_weighted_vote_requests_logprobs_and_favours_probable_solutions():
    # fake token logprobs are -0.1, -0.2, ... by position: short solutions have the higher mean
    long, short = "one two three four five six seven eight nine ten", "x"

    def responder(prompt, params, index):
        return f"<think>{long}</think>7" if index % 2 == 0 else f"<think>{short}</think>8"

    engine = FakeEngine(responder)
    result = await sc(n_samples=6, round_size=6, weighting="logprob").run(request(), engine, None, Budget())
    assert engine.calls[0][1].logprobs == 0
    assert result.counts == {"7": 3, "8": 3}
    assert result.choices[0].answer == "8"
    assert result.votes["8"] > result.votes["7"] and all(0 < v <= 3 for v in result.votes.values())
    majority = await sc(n_samples=6, round_size=6).run(request(), FakeEngine(responder), None, Budget())
    assert majority.choices[0].answer == "7"  # a tie goes to the answer seen first


async def test_decisive_vote_stops_exactly_when_the_leader_cannot_be_caught():
    # per round of 4: 1401 x3, 1301 x1. After 4: 3 vs 1 with 12 left; after 8: 6 vs 2 with 8 left; after 12: 9 vs 3
    # with 4 left, so 9 > 3 + 4 and the vote ends there
    engine, trace = FakeEngine(sequence(["1401", "1401", "1301", "1401"])), Trace(keep=True)
    result = await sc(n_samples=16, stop_agreement=None).run(request(), engine, None, Budget(), trace)
    assert [n for _, _, n in engine.calls] == [4, 4, 4]
    assert result.spent.samples == 12
    assert result.stopped_early and result.stop_reason == "decisive" and result.planned == 16
    assert messages(trace) == [
        "votes after 4: 1401 x3, 1301 x1",
        "votes after 8: 1401 x6, 1301 x2",
        "votes after 12: 1401 x9, 1301 x3",
        "stopping after 12 of 16 samples: 1401 cannot be overtaken",
    ]


async def test_unanimous_votes_stop_at_the_first_decisive_round():
    engine = FakeEngine(sequence(["5"]))
    result = await sc(n_samples=10, round_size=2, stop_agreement=None).run(request(), engine, None, Budget())
    # after 6: 6 > 0 + 4; after 4: 4 > 6 fails
    assert result.spent.samples == 6 and len(engine.calls) == 3


async def test_agreement_stops_after_min_samples():
    engine = FakeEngine(sequence(["1", "1", "1", "2", "1", "1", "1", "1"]))
    result = await sc(n_samples=32, stop_agreement=0.8, min_samples=8).run(request(), engine, None, Budget())
    # after 4 the leader holds 75%; after 8, 7 of 8 (88%), far from decisive with 24 left
    assert result.spent.samples == 8 and result.stop_reason == "agreement"
    never = await sc(n_samples=32, stop_agreement=0.9, min_samples=8).run(
        request(), FakeEngine(sequence(["1", "1", "1", "2"])), None, Budget()
    )
    # 75% never reaches 0.9: the vote runs until 3r > r + (32 - 4r), i.e. r = 6 rounds
    assert never.spent.samples == 24 and never.stop_reason == "decisive"


async def test_no_early_stop_runs_all_rounds_and_the_budget_caps_them():
    engine = FakeEngine(sequence([str(i) for i in range(100)]))
    result = await sc().run(request(), engine, None, Budget(max_samples=6))
    assert [n for _, _, n in engine.calls] == [4, 2]
    assert result.spent.samples == 6 and not result.stopped_early and result.exhausted is None
    engine = FakeEngine(sequence([str(i) for i in range(100)]))
    capped = await sc(n_samples=100).run(request(), engine, None, Budget(max_samples=6))
    assert capped.spent.samples == 6 and capped.planned == 6
    default = await sc().run(request(), FakeEngine(sequence([str(i) for i in range(100)])), None, Budget())
    assert default.spent.samples == 16


async def test_token_budget_ends_the_rounds_and_the_vote_uses_what_was_drawn():
    # 3 fake tokens per sample: rounds of 2 take 6 tokens, so two full rounds fit in 14
    engine = FakeEngine(sequence(["9", "8", "9", "7"]))
    result = await sc(n_samples=16, round_size=2, stop_agreement=None).run(
        request(), engine, None, Budget(max_tokens=14)
    )
    assert result.exhausted == "max_tokens"
    assert result.choices[0].answer == "9"
    assert result.spent.tokens <= 14


def test_check_refuses_what_the_weighting_needs():
    assert registry.get("self_consistency") is SelfConsistency
    sc().check(FakeEngine(), None)  # a plain vote needs no verifier
    with pytest.raises(InvalidRequestError, match="needs a verifier"):
        sc(weighting="verifier").check(FakeEngine(), None)
    no_logprobs = FakeEngine(capabilities=EngineCapabilities(max_model_len=64, logprobs=False))
    with pytest.raises(InvalidRequestError, match="logprobs") as err:
        sc(weighting="logprob").check(no_logprobs, None)
    assert err.value.param == "strategy_options"
    assert SelfConsistency.needs_verifier is False and sc(weighting="verifier").needs_verifier is True


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"votes": 4}, "votes"),
        ({"n_samples": 0}, "n_samples"),
        ({"answer_extraction": "first_number"}, "answer_extraction"),
        ({"weighting": "score"}, "weighting"),
        ({"round_size": 0}, "round_size"),
        ({"stop_agreement": 0.5}, "stop_agreement"),
        ({"stop_agreement": 1.5}, "stop_agreement"),
        ({"min_samples": 0}, "min_samples"),
        ({"aggregation": "max"}, "aggregation"),
    ],
)
def test_bad_options_are_errors(options, field):
    with pytest.raises(ValidationError) as err:
        SelfConsistency.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)
