"""beam_search: which prefixes survive each step, how many continuations each gets, and where the search stops."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.beam_search import BeamSearch, BeamSearchResult, spread
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Trace
from ponder.testing import FakeEngine

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+914?"}])
FMT = StepFormat()
WORDS = {"g": "good", "o": "ok", "b": "bad"}


def tree(depth: int = 2, kinds: dict[str, str] | None = None):
    """Responder: child ``i`` of the path tagged ``t`` is step ``<word> t.i``; at ``depth`` steps it answers ``t.i``.

    ``kinds[t]`` names the children's words by index (g/o/b), default good, bad, good, bad...
    """

    def responder(prompt, params, index):
        steps = FMT.steps(prompt.prefix)
        tag = steps[-1].split()[-1] if steps else ""
        child = f"{tag}.{index}" if tag else str(index)
        word = WORDS[(kinds or {}).get(tag, "gbgb")[index % 4]]
        if len(steps) == depth:
            return f"{word} {child}</think>{child}"
        return f"{word} {child}\nnot reached"  # the step call stops at the separator

    return responder


def request(n: int = 1, **params) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(**params), n=n)


def beam(**options) -> BeamSearch:
    return BeamSearch.from_request(options)


def messages(trace: Trace) -> list[str]:
    return [e.data["message"] for e in trace.events if e.data.get("message")]


def kept(trace: Trace) -> list[list[list[str]]]:
    return [[p["steps"] for p in e.data["kept"]] for e in trace.events if e.kind == "step"]


async def test_keeps_the_best_scored_prefixes_and_continues_them_from_the_cached_prefix(graded_prm):
    engine, prm, trace = FakeEngine(tree(kinds={"0": "obob"})), graded_prm, Trace(keep=True)
    result = await beam(beam_width=2, expansions=4).run(request(n=2), engine, prm, Budget(max_samples=8), trace)

    # Round 1 keeps the first two goods; in round 2 path "2"'s good children displace all of path "0"'s (ok, bad).
    assert kept(trace) == [[["good 0"], ["good 2"]], [["good 2", "good 2.0"], ["good 2", "good 2.2"]], []]
    assert [(p.prefix, n) for p, _, n in engine.calls] == [
        ("<think>", 8),  # the single root path takes the round's 2 x 4 continuations
        ("<think>good 0\n", 4),
        ("<think>good 2\n", 4),
        ("<think>good 2\ngood 2.0\n", 4),
        ("<think>good 2\ngood 2.2\n", 4),
    ]
    assert all(p.messages == PROMPT.messages for p, _, _ in engine.calls)  # never a new user turn
    assert all(params.stop == ("\n",) for _, params, _ in engine.calls)
    assert [len(call) for call in prm.calls] == [8, 8, 8]  # one batched PRM call per round
    assert prm.calls[2][0] == ["good 2", "good 2.0", "good 2.0.0"]

    best, second = result.choices
    assert best.text == "<think>good 2\ngood 2.0\ngood 2.0.0</think>2.0.0"
    assert best.answer == "2.0.0" and second.answer == "2.0.2"
    assert best.num_tokens == 6 and best.step_scores == [0.9, 0.9, 0.9] and best.score == 0.9
    assert len(result.trace.candidates) == 8 and result.spent.samples == 8 and result.spent.sequences == 24
    assert sorted(c.score for c in result.trace.candidates) == [0.1] * 4 + [0.9] * 4  # min over the bad last step
    assert messages(trace) == [
        "step 1: kept 2 of 8 paths; best 0.90: good 0",
        "step 2: kept 2 of 8 paths; best 0.90: good 2.0",
        "step 3: kept 0 of 0 paths, 8 finished (8 of 8; best 0.90: answer 2.0.0)",
    ]
    assert isinstance(result, BeamSearchResult) and result.exhausted is None
    assert result.summary() == {
        "rounds": 3,
        "paths_expanded": 24,
        "finished": 8,
        "expansions": 4,
        "stop_reason": "enough",
        "beam_width": 2,
    }


@pytest.mark.parametrize(
    ("aggregation", "survivor"),
    [("last", ["bad 0", "good 0.0"]), ("min", ["ok 1", "ok 1.0"]), ("prod", ["ok 1", "ok 1.0"])],
)
async def test_aggregation_ranks_partial_paths(aggregation, survivor, graded_prm):
    kinds = {"": "bobb", "0": "gggg", "1": "oooo"}  # bad, good: last 0.9, min 0.1, prod 0.09; ok, ok: 0.5, 0.5, 0.25
    trace = Trace(keep=True)
    options = {"beam_width": 2, "expansions": 2, "max_steps": 2, "aggregation": aggregation}
    await beam(**options).run(request(), FakeEngine(tree(depth=5, kinds=kinds)), graded_prm, Budget(), trace)
    assert kept(trace)[1][0] == survivor


def test_spread_shares_a_round_over_the_kept_paths_best_first():
    assert spread(4, 16) == [4, 4, 4, 4]
    assert spread(1, 16) == [16]
    assert spread(4, 6) == [2, 2, 1, 1]
    assert spread(2, 0) == [0, 0] and spread(0, 4) == []


async def test_the_sample_budget_caps_finished_solutions(graded_prm):
    engine = FakeEngine(tree(depth=1))
    result = await beam(beam_width=4, expansions=4).run(request(), engine, graded_prm, Budget(max_samples=6))
    assert [n for _, _, n in engine.calls] == [6, 2, 2, 1, 1]  # a round never asks for more than 6 solutions
    assert result.spent.samples == 6 == len(result.trace.candidates)
    assert result.exhausted is None and result.summary()["stop_reason"] == "enough"


@pytest.mark.parametrize(
    ("samples", "expansions", "width"), [(1, 4, 1), (4, 4, 1), (16, 4, 4), (64, 4, 16), (16, 2, 8)]
)
async def test_beam_width_follows_the_budget(samples, expansions, width, graded_prm):
    result = await beam(expansions=expansions, max_steps=1).run(
        request(), FakeEngine(tree(depth=5)), graded_prm, Budget(max_samples=samples)
    )
    assert result.summary()["beam_width"] == width


async def test_max_steps_stops_and_returns_the_best_unfinished_path(graded_prm):
    engine, trace = FakeEngine(tree(depth=100)), Trace(keep=True)
    result = await beam(beam_width=2, expansions=2, max_steps=3).run(request(), engine, graded_prm, Budget(), trace)
    assert len(engine.calls) == 5  # 1 + 2 + 2
    assert kept(trace)[-1] == [["good 0", "good 0.0", "good 0.0.0"], ["good 2", "good 2.0", "good 2.0.0"]]
    [best] = result.choices
    assert best.finish_reason == "length" and best.text == "<think>good 0\ngood 0.0\ngood 0.0.0\n"
    assert best.score == 0.9 and best.num_tokens == 6
    assert result.summary()["stop_reason"] == "max_steps" and result.summary()["rounds"] == 3


async def test_identical_continuations_are_one_path(graded_prm):
    engine, trace = FakeEngine(lambda p, s, i: "same step\n"), Trace(keep=True)
    await beam(beam_width=4, expansions=4, max_steps=2).run(request(), engine, graded_prm, Budget(), trace)
    assert [n for _, _, n in engine.calls] == [16, 16]  # one path went on, not four copies, with the 4 x 4 samples
    assert messages(trace)[0] == "step 1: kept 1 of 1 paths; best 0.30: same step"


async def test_an_answer_spanning_separators_is_completed_as_one_solution(graded_prm):
    def responder(prompt, params, index):
        if prompt.prefix == "<think>":
            return "467+914=1381\n"
        if prompt.prefix.endswith("</think>\n"):
            return "The answer\nis 1381"
        return "</think>\nThe answer\nis 1381"

    engine = FakeEngine(responder)
    result = await beam(beam_width=1, expansions=1).run(request(), engine, graded_prm, Budget(max_samples=1))
    [best] = result.choices
    assert best.text == "<think>467+914=1381\n</think>\nThe answer\nis 1381"
    assert best.answer == "The answer is 1381" and best.finish_reason == "stop"
    assert engine.calls[-1][1].stop == () and engine.calls[-1][0].prefix == "<think>467+914=1381\n</think>\n"
    assert result.spent.samples == 1 and result.exhausted is None


async def test_sampling_settings_per_step(graded_prm):
    async def params_of(options, **req):
        engine = FakeEngine(tree(depth=100))
        await beam(expansions=1, max_steps=1, **options).run(request(**req), engine, graded_prm, Budget())
        return engine.calls[0][1]

    assert (await params_of({})).temperature == 1.0  # the request's
    assert (await params_of({}, temperature=0.0)).temperature == 0.8  # greedy beams would all be the same
    assert (await params_of({"temperature": 0.3}, temperature=0.0)).temperature == 0.3
    step = await params_of({"step_max_tokens": 12}, logprobs=2)
    assert step.token_cap == 12 and step.max_tokens is None and step.logprobs is None


async def test_request_max_tokens_bounds_each_path(graded_prm):
    engine = FakeEngine(lambda p, s, i: "two tokens\n")
    result = await beam(beam_width=1, expansions=1).run(request(max_tokens=5), engine, graded_prm, Budget())
    assert [params.token_cap for _, params, _ in engine.calls] == [5, 3, 1]
    [best] = result.choices
    assert best.finish_reason == "length" and best.num_tokens == 5
    assert best.text == "<think>two tokens\ntwo tokens\ntwo"


async def test_a_token_budget_returns_the_best_path_so_far(graded_prm):
    engine = FakeEngine(tree(depth=100))
    result = await beam(beam_width=2, expansions=2).run(request(), engine, graded_prm, Budget(max_tokens=8))
    assert [params.token_cap for _, params, _ in engine.calls] == [2]  # 4 steps of 2 tokens, then nothing is left
    assert result.exhausted == "max_tokens" and result.spent.tokens == 8
    [best] = result.choices
    assert best.finish_reason == "length" and best.text == "<think>good 0\n" and best.score == 0.9


async def test_a_time_budget_keeps_the_solutions_finished_so_far(graded_prm):
    def responder(prompt, params, index):
        depth = len(FMT.steps(prompt.prefix))
        return f"good {depth}\n" if index == 0 else f"bad {depth}</think>{depth}"

    engine = FakeEngine(responder, token_delay=0.02)
    result = await beam(beam_width=1, expansions=2).run(request(), engine, graded_prm, Budget(max_seconds=0.4))
    assert result.exhausted == "max_seconds" and engine.active == 0
    rounds = result.summary()["rounds"]
    assert rounds >= 2 and result.summary()["stop_reason"] == "max_seconds"
    assert len(result.trace.candidates) >= rounds - 1  # one finished per completed round
    assert result.choices[0].finish_reason == "stop" and result.choices[0].score == 0.1


def test_needs_a_step_verifier_and_prefix_continuation(orm):
    assert registry.get("beam_search") is BeamSearch
    with pytest.raises(InvalidRequestError, match="needs a step verifier") as err:
        beam().check(FakeEngine(), orm)
    assert err.value.param == "verifier"
    with pytest.raises(InvalidRequestError, match="no verifier is loaded"):
        beam().check(FakeEngine(), None)


async def test_a_whole_answer_verifier_is_refused_before_any_generation(orm):
    engine = FakeEngine(tree())
    with pytest.raises(InvalidRequestError, match="step verifier"):
        await beam().run(request(), engine, orm, Budget())
    assert engine.calls == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"width": 4}, "width"),
        ({"beam_width": 0}, "beam_width"),
        ({"expansions": 0}, "expansions"),
        ({"expansions": 1000}, "expansions"),
        ({"max_steps": 0}, "max_steps"),
        ({"step_max_tokens": 0}, "step_max_tokens"),
        ({"aggregation": "median"}, "aggregation"),
        ({"final_aggregation": "max"}, "final_aggregation"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"answer_extraction": "last_word"}, "answer_extraction"),
    ],
)
def test_bad_options_are_errors(options, field):
    with pytest.raises(ValidationError) as err:
        BeamSearch.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)


async def test_a_verifier_that_reads_the_answer_gets_it_for_finished_paths_only():
    """Partial paths are scored on their steps; a finished solution's answer comes last, after its steps, and
    counts in its score (here it vetoes every answer but one)."""
    from ponder.testing import RulePRM

    prm = RulePRM({"good": 0.9, "bad": 0.1, "</think>0.0.0": 0.05}, default=0.3, scores_answer=True, steps_only=True)
    engine = FakeEngine(tree(kinds={"0": "gggg", "2": "gggg"}))
    result = await beam(beam_width=2, expansions=4).run(request(n=1), engine, prm, Budget(max_samples=8))
    first, second, last = prm.calls
    assert all(not s[-1].startswith("</think>") for s in first + second)
    assert all(s[-1] == "</think>" + s[-2].split()[-1] for s in last)  # finished: steps, then the answer
    assert result.choices[0].answer != "0.0.0" and result.choices[0].step_scores[-1] == 0.3
    assert [c.score for c in result.trace.candidates if c.text.endswith("</think>0.0.0")] == [0.05]
