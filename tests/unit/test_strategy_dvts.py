"""dvts: each subtree keeps its own best step, subtrees end on a finished best child, answers come back distinct."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.beam_search import BeamSearch
from ponder.strategies.dvts import DVTS, DVTSResult, allocate
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Trace
from ponder.testing import FakeEngine

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+914?"}])
FMT = StepFormat()


def forest(plan: dict[str, list[str]]):
    """Responder: the k-th call from the root is subtree ``"abcde"[k]``; ``plan[tag][i]`` is the child ``i`` of the
    path whose last step is tagged ``tag`` (a step ``"<word> <tag>"``, or a final ``"<word> <tag>|<answer>"``).
    """
    roots = []

    def responder(prompt, params, index):
        steps = FMT.steps(prompt.prefix)
        if not steps:
            if index == 0:
                roots.append("abcde"[len(roots)])
            tag = roots[-1]
        else:
            tag = steps[-1].split()[-1]
        word, _, answer = plan[tag][index].partition("|")
        child = f"{tag}{index}"
        return f"{word} {child}</think>{answer}" if answer else f"{word} {child}\nnot reached"

    return responder


def request(n: int = 1) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(), n=n)


def dvts(**options) -> DVTS:
    return DVTS.from_request(options)


def paths(trace: Trace) -> list[list[tuple[int, list[str]]]]:
    return [[(p["tree"], p["steps"]) for p in e.data["paths"]] for e in trace.events if e.kind == "step"]


async def test_a_weaker_subtree_keeps_its_own_best_step_and_answers_stay_distinct(graded_prm):
    plan = {
        "a": ["ok", "bad"],  # subtree a's best child is only ok (0.5) ...
        "b": ["good", "good"],  # ... yet subtree b's two goods do not displace it
        "a0": ["good|8", "good|8"],
        "b0": ["good|7", "good|7"],
    }
    engine, prm, trace = FakeEngine(forest(plan)), graded_prm, Trace(keep=True)
    result = await dvts(expansions=2).run(request(n=2), engine, prm, Budget(max_samples=4), trace)

    assert paths(trace)[0] == [(0, ["ok a0"]), (1, ["good b0"])]
    assert [(p.prefix, n) for p, _, n in engine.calls] == [
        ("<think>", 2),
        ("<think>", 2),
        ("<think>ok a0\n", 2),
        ("<think>good b0\n", 2),
    ]
    assert all(p.messages == PROMPT.messages for p, _, _ in engine.calls)
    assert [len(call) for call in prm.calls] == [4, 4]  # both subtrees scored in one call per round
    assert [(c.answer, c.score) for c in result.choices] == [("7", 0.9), ("8", 0.5)]  # not 7 twice
    assert result.spent.samples == 4 and len(result.trace.candidates) == 4
    assert isinstance(result, DVTSResult)
    assert result.summary() == {
        "rounds": 2,
        "paths_expanded": 8,
        "finished": 4,
        "expansions": 2,
        "stop_reason": "enough",
        "subtrees": 2,
        "waves": 1,
    }
    assert next(e.data["message"] for e in trace.events if e.kind == "step") == (
        "step 1: 2 subtrees going on; best 0.90: good b0"
    )


async def test_the_same_tree_under_beam_search_loses_the_weaker_subtree(graded_prm):
    # For contrast: one shared beam of width 2 keeps b's two goods, so only b's answer is found.
    plan = {"a": ["good", "good", "ok", "bad"] * 2, "a0": ["good|7"] * 4, "a1": ["good|7"] * 4, "a2": ["good|8"] * 4}
    result = await BeamSearch.from_request({"beam_width": 2}).run(
        request(n=2), FakeEngine(forest(plan)), graded_prm, Budget(max_samples=8)
    )
    assert {c.answer for c in result.trace.candidates} == {"7"}


async def test_a_subtree_ends_when_its_best_child_is_a_finished_solution(graded_prm):
    plan = {
        "a": ["good|1", "bad"],  # the finished child outscores the step: subtree a is done
        "b": ["good", "bad|2"],  # the step outscores the finished child: subtree b goes on
        "b0": ["good|3", "bad|4"],
    }
    engine, trace = FakeEngine(forest(plan)), Trace(keep=True)
    result = await dvts(subtrees=2, expansions=2).run(request(n=3), engine, graded_prm, Budget(max_samples=4), trace)
    assert [p.prefix for p, _, _ in engine.calls] == ["<think>", "<think>", "<think>good b0\n"]
    step1 = next(e for e in trace.events if e.kind == "step")
    assert step1.data["ended"] == [0] and paths(trace)[0] == [(1, ["good b0"])]
    assert [c.answer for c in result.trace.candidates] == ["1", "2", "3", "4"]
    assert [c.answer for c in result.choices] == ["1", "3", "2"]
    assert result.choices[1].text == "<think>good b0\ngood b00</think>3"


async def test_subtrees_follow_the_budget_and_never_finish_more_than_it_allows(graded_prm):
    plan = {"a": ["good|1"] * 4, "b": ["good|2"] * 4}
    engine = FakeEngine(forest(plan))
    result = await dvts(expansions=4).run(request(), engine, graded_prm, Budget(max_samples=6))
    assert result.summary()["subtrees"] == 1  # 6 // 4
    assert [n for _, _, n in engine.calls] == [4]  # one subtree, one round, all four finished
    too_many = await dvts(subtrees=3, expansions=4).run(
        request(), FakeEngine(forest(plan | {"c": ["good|3"] * 4})), graded_prm, Budget(max_samples=6)
    )
    assert too_many.spent.samples == 6 == len(too_many.trace.candidates)


async def test_max_steps_returns_the_best_unfinished_subtree_path(graded_prm):
    plan = {"a": ["ok", "bad"], "b": ["good", "bad"], "a0": ["ok", "ok"], "b0": ["bad", "bad"]}
    result = await dvts(subtrees=2, expansions=2, max_steps=2).run(
        request(), FakeEngine(forest(plan)), graded_prm, Budget()
    )
    [best] = result.choices
    assert best.finish_reason == "length" and best.text == "<think>ok a0\nok a00\n"  # its 0.5 beats b's 0.1
    assert result.summary()["stop_reason"] == "max_steps"


async def test_stop_score_starts_no_wave_after_a_confident_solution(graded_prm):
    plan = {"a": ["good|7", "good|7"], "b": ["good|8", "good|8"]}
    engine, trace = FakeEngine(forest(plan)), Trace(keep=True)
    result = await dvts(expansions=2, stop_score=0.8, wave_subtrees=1).run(
        request(), engine, graded_prm, Budget(max_samples=4), trace
    )
    assert [(p.prefix, n) for p, _, n in engine.calls] == [("<think>", 2)]  # subtree b never starts
    assert result.choices[0].answer == "7" and result.spent.samples == 2
    assert result.summary()["waves"] == 1 and result.summary()["stop_reason"] == "confident"
    assert "best score 0.900 >= stop_score 0.8 after 1 waves" in [e.data.get("message") for e in trace.events]


async def test_waves_go_on_until_a_solution_is_confident(graded_prm):
    plan = {"a": ["ok|8", "ok|8"], "b": ["good|7", "good|7"]}
    engine = FakeEngine(forest(plan))
    result = await dvts(expansions=2, stop_score=0.8, wave_subtrees=1).run(
        request(), engine, graded_prm, Budget(max_samples=4)
    )
    assert [n for _, _, n in engine.calls] == [2, 2]  # one subtree a wave, one after the other
    assert result.choices[0].answer == "7" and result.summary()["waves"] == 2


async def test_stop_score_runs_waves_of_four_subtrees_by_default(graded_prm):
    plan = {tree: [f"ok|{answer}"] * 2 for answer, tree in enumerate("abcde")}
    engine, trace = FakeEngine(forest(plan)), Trace(keep=True)
    result = await dvts(expansions=2, stop_score=0.8).run(request(), engine, graded_prm, Budget(max_samples=10), trace)
    assert result.summary()["subtrees"] == 5 and result.summary()["waves"] == 2
    assert [len(step) for step in paths(trace)] == [0, 0]  # each wave's subtrees all finished in one step
    assert len(engine.calls) == 5 and result.spent.samples == 10


async def test_seeded_subtrees_from_the_same_root_get_distinct_seeds(graded_prm):
    plan = {"a": ["ok|8", "ok|8"], "b": ["good|7", "good|7"]}
    engine = FakeEngine(forest(plan))
    seeded = StrategyRequest(PROMPT, SamplingParams(seed=100), n=1)
    await dvts(expansions=2).run(seeded, engine, graded_prm, Budget(max_samples=4))
    assert [(p.prefix, params.seed) for p, params, _ in engine.calls] == [("<think>", 100), ("<think>", 102)]


def test_allocate_gives_each_subtree_its_expansions_until_the_room_is_used():
    assert allocate(4, 4, 16) == [4, 4, 4, 4]
    assert allocate(4, 4, 6) == [4, 2, 0, 0]
    assert allocate(2, 3, 0) == [0, 0]


def test_needs_a_step_verifier(orm):
    assert registry.get("dvts") is DVTS
    with pytest.raises(InvalidRequestError, match="needs a step verifier"):
        dvts().check(FakeEngine(), orm)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"beam_width": 2}, "beam_width"),
        ({"subtrees": 0}, "subtrees"),
        ({"expansions": 0}, "expansions"),
        ({"max_steps": 0}, "max_steps"),
        ({"step_max_tokens": 0}, "step_max_tokens"),
        ({"aggregation": "max"}, "aggregation"),
        ({"final_aggregation": "median"}, "final_aggregation"),
        ({"temperature": 3}, "temperature"),
    ],
)
def test_bad_options_are_errors(options, field):
    with pytest.raises(ValidationError) as err:
        DVTS.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)
