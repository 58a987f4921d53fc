"""tree_of_thoughts: which states BFS keeps, the order DFS explores and backtracks, and the model's own judgement."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, EngineCapabilities, Prompt, Sample, SamplingParams, TokenLogprob
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Trace
from ponder.strategies.tree_of_thoughts import JUDGE_QUESTION, TreeOfThoughts, TreeOfThoughtsResult, p_yes
from ponder.testing import FakeEngine

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+914?"}])
FMT = StepFormat()
WORDS = {"x": "best", "g": "good", "o": "ok", "b": "bad", "z": "wrong"}


def tree(depth: int = 2, kinds: dict[str, str] | None = None):
    """Responder: child ``i`` of the state tagged ``t`` is step ``<word> t.i``; at ``depth`` steps it answers ``t.i``.

    ``kinds[t]`` names the children's words by index (x/g/o/b/z), default good, bad, good, bad. A judge prompt (the
    self evaluator's) is answered "Yes".
    """

    def responder(prompt, params, index):
        if JUDGE_QUESTION in prompt.messages[-1]["content"]:
            return "Yes"
        steps = FMT.steps(prompt.prefix)
        tag = steps[-1].split()[-1] if steps else ""
        child = f"{tag}.{index}" if tag else str(index)
        word = WORDS[(kinds or {}).get(tag, "gbgb")[index % 4]]
        if len(steps) == depth:
            return f"{word} {child}</think>{child}"
        return f"{word} {child}\nnot reached"

    return responder


def request(n: int = 1, **params) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(**params), n=n)


def tot(**options) -> TreeOfThoughts:
    return TreeOfThoughts.from_request(options)


def messages(trace: Trace) -> list[str]:
    return [e.data["message"] for e in trace.events if e.data.get("message")]


def kept(trace: Trace) -> list[list[list[str]]]:
    return [[s["steps"] for s in e.data["kept"]] for e in trace.events if e.kind == "level"]


def expanded(engine: FakeEngine) -> list[str]:
    return [p.prefix for p, params, _ in engine.calls if "\n" in params.stop]


async def test_bfs_keeps_the_top_b_states_by_value_each_level(prm):
    kinds = {"": "obgx", "3": "bbbb", "2": "oooo"}
    engine, prm, trace = FakeEngine(tree(kinds=kinds)), prm, Trace(keep=True)
    result = await tot(proposals=4, breadth=2).run(request(n=2), engine, prm, Budget(), trace)

    # Level 1 keeps best 3 (1.0) and good 2 (.75); level 2 keeps good 2's ok children (.5) over best 3's bad (.25).
    assert kept(trace) == [[["best 3"], ["good 2"]], [["good 2", "ok 2.0"], ["good 2", "ok 2.1"]], []]
    assert [(p.prefix, n) for p, _, n in engine.calls] == [
        ("<think>", 4),
        ("<think>best 3\n", 4),
        ("<think>good 2\n", 4),
        ("<think>good 2\nok 2.0\n", 4),
        ("<think>good 2\nok 2.1\n", 4),
    ]
    assert all(p.messages == PROMPT.messages and params.stop == ("\n",) for p, params, _ in engine.calls)
    assert [len(call) for call in prm.calls] == [4, 4, 4, 4, 4]  # one PRM call per expansion, run concurrently
    assert messages(trace) == [
        "level 1: kept 2 of 4 states; best 1.00: best 3",
        "level 2: kept 2 of 8 states; best 0.50: ok 2.0",
        "level 3: kept 0 of 0 states, 8 finished (best 0.50: answer 2.0.0)",
    ]
    best, second = result.choices
    assert best.text == "<think>good 2\nok 2.0\ngood 2.0.0</think>2.0.0" and best.score == 0.5  # min of .75 .5 .75
    assert second.answer == "2.0.2" and best.step_scores == [0.75, 0.5, 0.75]
    assert result.spent.samples == 8 == len(result.trace.candidates)
    assert isinstance(result, TreeOfThoughtsResult)
    assert result.summary() == {
        "search": "bfs",
        "proposals": 4,
        "breadth": 2,
        "depth": 3,
        "states_expanded": 5,
        "pruned": 8,
        "finished": 8,
        "stop_reason": "all_finished",
    }


@pytest.mark.parametrize(("samples", "k", "b"), [(1, 1, 1), (4, 4, 1), (16, 4, 4), (64, 4, 16), (None, 4, 4)])
async def test_default_sizes_follow_the_sample_budget(samples, k, b, prm):
    result = await tot(max_depth=1).run(request(), FakeEngine(tree(depth=5)), prm, Budget(max_samples=samples))
    assert (result.summary()["proposals"], result.summary()["breadth"]) == (k, b)


async def test_bfs_stops_once_n_solutions_finished(prm):
    engine = FakeEngine(tree(depth=1))
    result = await tot(proposals=4, breadth=4).run(request(), engine, prm, Budget(max_samples=6))
    assert [n for _, _, n in engine.calls] == [4, 4, 2]  # a level asks for no more answers than the budget admits
    assert result.spent.samples == 6 and result.summary()["stop_reason"] == "enough" and result.exhausted is None


async def test_dfs_goes_deepest_first_in_value_order_and_backtracks_from_pruned_states(prm):
    # Root: good 0 (.75), ok 1 (.5), bad 2 (.25). good 0's proposals are all wrong (0 < .5): pruned, backtrack to
    # ok 1, whose good child leads to a finished answer valued min(.5, .75, .75) = .5 >= .5: the search stops.
    kinds = {"": "gob", "0": "zzz", "1": "gzz", "1.0": "zgz"}
    engine, trace = FakeEngine(tree(kinds=kinds)), Trace(keep=True)
    result = await tot(search="dfs", proposals=3).run(request(), engine, prm, Budget(), trace)
    assert expanded(engine) == ["<think>", "<think>good 0\n", "<think>ok 1\n", "<think>ok 1\ngood 1.0\n"]
    assert messages(trace) == [
        "depth 1: 3 proposals; best 0.75: good 0",
        "depth 2 after (good 0): 3 proposals; best 0.00: wrong 0.0",
        "pruned 3 at depth 2 (best 0.00 < 0.50)",
        "backtracking from depth 1 (good 0)",
        "depth 2 after (ok 1): 3 proposals; best 0.75: good 1.0",
        "depth 3: answer 1.0.1, value 0.50 >= 0.50; done",
    ]
    [best] = result.choices
    assert best.text == "<think>ok 1\ngood 1.0\ngood 1.0.1</think>1.0.1" and best.score == 0.5
    assert len(result.trace.candidates) == 3 and result.spent.samples == 3  # the answers of the last expansion
    summary = result.summary()
    assert summary["stop_reason"] == "found" and summary["pruned"] == 3 and summary["states_expanded"] == 4


async def test_dfs_goes_on_past_finished_answers_below_the_threshold(prm):
    # All of good 0's answers are bad (min .25 < .5): the search backtracks to good 2, whose answers pass.
    kinds = {"": "gbg", "0": "bbb", "2": "ggg"}
    engine = FakeEngine(tree(depth=1, kinds=kinds))
    result = await tot(search="dfs", proposals=3).run(request(), engine, prm, Budget())
    assert expanded(engine) == ["<think>", "<think>good 0\n", "<think>good 2\n"]
    assert result.choices[0].answer == "2.0" and result.choices[0].score == 0.75
    assert len(result.trace.candidates) == 6


async def test_dfs_backtracks_at_the_depth_limit_and_stops_after_max_states(prm):
    engine, trace = FakeEngine(tree(depth=100, kinds={"": "gg"})), Trace(keep=True)
    result = await tot(search="dfs", proposals=2, max_depth=1).run(request(), engine, prm, Budget(), trace)
    assert expanded(engine) == ["<think>"]
    assert "depth limit at 1 (good 0), backtracking" in messages(trace)
    assert result.summary()["stop_reason"] == "exhausted"
    [best] = result.choices
    assert best.finish_reason == "length" and best.text == "<think>good 0\n"  # the best open state, as it is

    engine = FakeEngine(tree(depth=100))
    result = await tot(search="dfs", proposals=2, max_states=3).run(request(), engine, prm, Budget())
    assert expanded(engine) == ["<think>", "<think>good 0\n", "<think>good 0\ngood 0.0\n"]
    assert result.summary()["stop_reason"] == "max_states"


def judged(yes: float, no: float):
    """top_logprobs for the judge: the first token's alternatives with these probabilities (and noise)."""

    def top(prompt, token):
        return [("Yes", math.log(yes)), ("No", math.log(no)), ("Maybe", math.log(0.05))]

    return top


def test_p_yes_reads_the_first_tokens_top_logprobs():
    def sample(token, top):
        return Sample("x", 1, "length", logprobs=[TokenLogprob(token, top[0][1], tuple(top))])

    assert p_yes(sample("Yes", [("Yes", math.log(0.6)), ("No", math.log(0.2))])) == pytest.approx(0.75)
    both = [(" yes", math.log(0.3)), ("Yes", math.log(0.3)), (" No", math.log(0.2)), ("no", math.log(0.1))]
    assert p_yes(sample(" yes", both)) == pytest.approx(0.6 / 0.9)  # spellings of yes and no add up
    assert p_yes(sample("Maybe", [("Maybe", -0.1), ("Perhaps", -2.0)])) == 0.5  # neither: no information
    assert p_yes(sample("No", [("Maybe", -0.1)])) == 0.0  # the chosen token counts when the top list lacks it
    assert p_yes(None) == 0.5 and p_yes(Sample("", 0, "stop")) == 0.5


async def test_the_self_evaluator_asks_the_model_and_values_states_by_p_yes():
    def top(prompt, token):
        shown = prompt.messages[-1]["content"].split("Reasoning so far:\n")[-1].split("\n\n")[0]
        steps = [line for line in shown.split("\n") if not line.startswith("Final answer")]
        yes = 0.8 if "good" in steps[-1] else 0.3
        return [("Yes", math.log(yes)), ("No", math.log(1 - yes - 0.1)), ("Maybe", math.log(0.1))]

    engine = FakeEngine(tree(depth=1, kinds={"": "bgbb"}), top_logprobs=top)
    trace = Trace(keep=True)
    result = await tot(evaluator="self", proposals=4, breadth=1).run(request(), engine, None, Budget(), trace)

    assert kept(trace)[0] == [["good 1"]]  # P(yes) = .8 / .9 against .3 / .9
    judges = [(p, params) for p, params, _ in engine.calls if not params.stop]
    assert len(judges) == 8  # four states, then the four answers of the kept one
    prompt, params = judges[0]
    assert prompt.messages == (
        {
            "role": "user",
            "content": "What is 467+914?\n\nReasoning so far:\nbad 0\n\nIs this reasoning correct so far? "
            "Answer yes or no.",
        },
    )
    assert prompt.prefix == "<think></think>"  # a new chat, its think block closed: the first token is the verdict
    assert (params.max_tokens, params.logprobs, params.temperature) == (1, 5, 0.0)
    final = judges[4][0].messages[0]["content"]
    assert "Reasoning so far:\ngood 1\ngood 1.0\nFinal answer: 1.0\n\n" in final
    [best] = result.choices
    assert best.answer == "1.0" and best.score == pytest.approx(0.8 / 0.9) and best.step_scores is None
    # Judgements cost tokens (one each) but are no samples: the four answers are.
    assert result.spent.samples == 4 and result.spent.tokens == 4 * 2 + 4 * 2 + 8
    assert result.spent.prompt_tokens == engine._prompt_tokens(PROMPT)


async def test_the_self_evaluator_without_a_yes_or_no_is_neutral():
    steps = tree(depth=1)

    def responder(prompt, params, index):
        return "Maybe" if JUDGE_QUESTION in prompt.messages[-1]["content"] else steps(prompt, params, index)

    engine = FakeEngine(responder, top_logprobs=lambda p, t: [("Maybe", -0.1), ("Perhaps", -3.0)])
    result = await tot(evaluator="self", proposals=2).run(request(), engine, None, Budget())
    assert {c.score for c in result.trace.candidates} == {0.5}


async def test_a_sample_budget_leaves_judgements_possible():
    engine = FakeEngine(tree(depth=0), top_logprobs=judged(0.6, 0.2))
    result = await tot(evaluator="self", proposals=4).run(request(), engine, None, Budget(max_samples=2))
    assert [n for _, _, n in engine.calls] == [2, 1, 1]  # two answers admitted, then both judged
    assert [c.score for c in result.trace.candidates] == [pytest.approx(0.75)] * 2


def test_check_refuses_what_the_search_cannot_serve(prm, orm):
    assert registry.get("tree_of_thoughts") is TreeOfThoughts
    with pytest.raises(InvalidRequestError, match="evaluator='prm' needs a step verifier") as err:
        tot().check(FakeEngine(), orm)
    assert err.value.param == "verifier"
    with pytest.raises(InvalidRequestError, match="no verifier is loaded"):
        tot().check(FakeEngine(), None)
    tot(evaluator="self").check(FakeEngine(), None)  # the model judges itself: no verifier needed
    no_logprobs = FakeEngine(capabilities=EngineCapabilities(max_model_len=512, logprobs=False))
    with pytest.raises(InvalidRequestError, match="yes/no logprobs") as err:
        tot(evaluator="self").check(no_logprobs, None)
    assert err.value.param == "strategy_options"
    no_prefix = FakeEngine(capabilities=EngineCapabilities(max_model_len=512, prefix_continuation=False))
    with pytest.raises(InvalidRequestError, match="continues partial solutions"):
        tot().check(no_prefix, prm)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"width": 4}, "width"),
        ({"search": "astar"}, "search"),
        ({"proposals": 0}, "proposals"),
        ({"proposals": 65}, "proposals"),
        ({"breadth": 0}, "breadth"),
        ({"evaluator": "orm"}, "evaluator"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"max_states": 0}, "max_states"),
        ({"max_depth": 0}, "max_depth"),
        ({"step_max_tokens": 0}, "step_max_tokens"),
        ({"aggregation": "median"}, "aggregation"),
        ({"temperature": -1}, "temperature"),
    ],
)
def test_options_are_validated(options, field):
    with pytest.raises(ValidationError) as err:
        TreeOfThoughts.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)
