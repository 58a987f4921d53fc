"""mcts: which child PUCT/UCT selects, how values back up, what one expansion asks for, and where the search stops."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, EngineCapabilities, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.mcts import MCTS, MCTSResult, backup, mark_solved, most_visited_terminal, puct, select, uct
from ponder.strategies.steps import StepFormat
from ponder.strategies.trace import Candidate, Trace
from ponder.strategies.tree import Node
from ponder.testing import FakeEngine, TableVerifier, after_think

PROMPT = Prompt.chat([{"role": "user", "content": "What is 467+914?"}])
FMT = StepFormat()
WORDS = {"x": "best", "g": "good", "o": "ok", "b": "bad", "z": "wrong"}


def answer_orm() -> TableVerifier:
    """A whole-answer verifier: 1.0 for answers under node "2", else 0.2."""
    return TableVerifier({"2": 1.0}, key=lambda a: after_think(a)[:1], default=0.2, name="orm")


def tree(depth: int = 2, kinds: dict[str, str] | None = None):
    """Responder: child ``i`` of the path tagged ``t`` is step ``<word> t.i``; at ``depth`` steps it answers ``t.i``.

    ``kinds[t]`` names the children's words by index (x/g/o/b/z), default good, bad, good, bad. A call without the
    step separator as a stop (a rollout) finishes the solution at once.
    """

    def responder(prompt, params, index):
        steps = FMT.steps(prompt.prefix)
        tag = steps[-1].split()[-1] if steps else ""
        child = f"{tag}.{index}" if tag else str(index)
        word = WORDS[(kinds or {}).get(tag, "gbgb")[index % 4]]
        if len(steps) == depth or "\n" not in params.stop:
            return f"{word} {child}</think>{child}"
        return f"{word} {child}\nnot reached"

    return responder


def request(n: int = 1, **params) -> StrategyRequest:
    return StrategyRequest(PROMPT, SamplingParams(**params), n=n)


def mcts(**options) -> MCTS:
    return MCTS.from_request(options)


def messages(trace: Trace) -> list[str]:
    return [e.data["message"] for e in trace.events if e.data.get("message")]


def node(visits: int, mean: float, prior: float, parent: Node | None = None) -> Node:
    n = Node(pieces=("s",), parent=parent, prior=prior, visits=visits, value_sum=visits * mean)
    if parent is not None:
        parent.children.append(n)
    return n


def test_selection_follows_the_puct_and_uct_formulas():
    root = Node(visits=10)
    a, b, c = node(6, 0.7, 0.2, root), node(1, 0.5, 0.5, root), node(3, 0.6, 0.3, root)
    assert puct(root, a, 1.0) == pytest.approx(0.7 + 0.2 * math.sqrt(10) / 7)  # 0.790
    assert puct(root, b, 1.0) == pytest.approx(0.5 + 0.5 * math.sqrt(10) / 2)  # 1.291: the prior and few visits win
    assert puct(root, c, 1.0) == pytest.approx(0.6 + 0.3 * math.sqrt(10) / 4)  # 0.837
    assert select(root, "puct", 1.0) is b
    assert select(root, "puct", 0.1) is a  # little exploration: the best mean value
    assert uct(root, a, 1.41) == pytest.approx(0.7 + 1.41 * math.sqrt(math.log(10) / 6))  # 1.573
    assert select(root, "uct", 1.41) is b  # 0.5 + 1.41 * sqrt(ln 10) = 2.64
    assert select(root, "uct", 0.1) is a  # .762 > .688 (c) > .652 (b)
    assert uct(root, Node(parent=root), 1.0) == math.inf  # an unvisited child goes first

    # Selection descends to a leaf, skipping solved nodes (finished, or with every path below finished).
    b1, b2 = node(0, 0.0, 0.9, b), node(1, 0.4, 0.1, b)
    b.visits = 1
    assert select(root, "puct", 1.0) is b1  # 0 + .9 * 1 / 1 beats .4 + .1 * 1 / 2
    b1.candidate = Candidate("<think>s</think>1", 2)
    mark_solved(b1)
    assert b1.solved and not b.solved and select(root, "puct", 1.0) is b2
    b2.candidate = Candidate("<think>s</think>2", 2)
    mark_solved(b2)
    assert b.solved and not root.solved and select(root, "puct", 1.0) is c  # b is skipped: nothing left to grow


def test_backup_adds_one_visit_per_value_to_the_node_and_its_ancestors():
    root = Node()
    child = node(0, 0.0, 1.0, root)
    grandchild = node(0, 0.0, 1.0, child)
    backup(child, [0.75, 0.25, 0.5])
    backup(grandchild, [1.0])
    assert (root.visits, root.value_sum, root.mean) == (4, 2.5, 0.625)
    assert (child.visits, child.value_sum) == (4, 2.5)
    assert (grandchild.visits, grandchild.value_sum) == (1, 1.0)


async def test_simulations_expand_with_one_call_from_the_selected_prefix_and_back_up_prm_values(prm):
    engine, prm, trace = FakeEngine(tree(depth=1)), prm, Trace(keep=True)
    result = await mcts(simulations=3).run(request(), engine, prm, Budget(), trace)

    # Sim 1 expands the root (good .75, bad .25, good .75, priors 1/3: equal-length steps). Sim 2: PUCT picks
    # "good 0" (.75 + 1/3 * sqrt 3 / 2 ties "good 2"; the first wins); its three answers are terminal,
    # valued min over their steps: .75, .25, .75, which solves "good 0". Sim 3: "good 2" (.75 + 1/3 * sqrt 6 / 2)
    # beats "bad 1" (.25 + the same bonus).
    assert [(p.prefix, n) for p, _, n in engine.calls] == [
        ("<think>", 3),
        ("<think>good 0\n", 3),
        ("<think>good 2\n", 3),
    ]
    assert all(p.messages == PROMPT.messages for p, _, _ in engine.calls)  # never a new user turn
    assert all(params.stop == ("\n",) and params.logprobs == 0 for _, params, _ in engine.calls)
    assert [len(call) for call in prm.calls] == [3, 3, 3]  # one batched PRM call per expansion
    assert prm.calls[1][1] == ["good 0", "bad 0.1"]

    summary = result.summary()
    assert summary["simulations"] == 3 and summary["tree_size"] == 10 and summary["stop_reason"] == "simulations"
    assert summary["root_children"] == [
        {"step": "good 0", "visits": 4, "value": 0.625, "prior": 0.3333},
        {"step": "bad 1", "visits": 1, "value": 0.25, "prior": 0.3333},
        {"step": "good 2", "visits": 4, "value": 0.625, "prior": 0.3333},
    ]
    assert result.spent.samples == 6 == summary["finished"] == len(result.trace.candidates)
    [best] = result.choices
    assert best.text == "<think>good 0\ngood 0.0</think>0.0" and best.score == 0.75 and best.step_scores == [0.75] * 2
    assert messages(trace) == [
        "sim 1: expanded depth 1 (good 0), value 0.75, best so far none",
        "sim 2: expanded depth 2 (good 0.0 -> answer 0.0), value 0.75, 3 finished, best so far 0.0",
        "sim 3: expanded depth 2 (good 2.0 -> answer 2.0), value 0.75, 3 finished, best so far 0.0",
    ]
    assert isinstance(result, MCTSResult) and result.exhausted is None


@pytest.mark.parametrize(("c_puct", "third"), [(1.0, "<think>good 1\n"), (0.0, "<think>good 0\nbest 0.0\n")])
async def test_the_exploration_constant_decides_between_a_proven_and_a_fresh_child(c_puct, third, prm):
    # Sim 2 grows good 0 into two best steps: Q = (.75 + 2) / 3 = .917 with N = 3. Sim 3, root N = 5: with c = 1,
    # good 1 (.75 + .5 * sqrt 5 / 2 = 1.309) beats good 0 (.917 + .5 * sqrt 5 / 4 = 1.196); with c = 0, Q decides.
    engine = FakeEngine(tree(depth=5, kinds={"": "gg", "0": "xx"}))
    await mcts(simulations=3, expansion_width=2, c_puct=c_puct).run(request(), engine, prm, Budget())
    assert [p.prefix for p, _, _ in engine.calls][:3] == ["<think>", "<think>good 0\n", third]
    assert "\n" not in engine.calls[3][1].stop  # nothing finished in 3 simulations: the best path is rolled out


async def test_priors_are_step_probabilities_normalised_among_siblings(prm):
    scripted = {"good": -0.1, "bad": -2.0}

    def top_logprobs(prompt, token):
        return [(token, scripted.get(token.strip(), 0.0))]

    engine = FakeEngine(tree(depth=5), top_logprobs=top_logprobs)
    result = await mcts(simulations=1).run(request(), engine, prm, Budget())
    good, bad = math.exp(-0.1), math.exp(-2.0)
    priors = [c["prior"] for c in result.summary()["root_children"]]
    share_good, share_bad = round(good / (2 * good + bad), 4), round(bad / (2 * good + bad), 4)
    assert priors == [share_good, share_bad, share_good]  # good 0, bad 1, good 2

    # Without logprobs (uct, or an engine that has none) priors are uniform, and no logprobs are asked for.
    for engine, options in (
        (FakeEngine(tree(depth=5), top_logprobs=top_logprobs), {"selection": "uct"}),
        (FakeEngine(tree(depth=5), capabilities=EngineCapabilities(max_model_len=512, logprobs=False)), {}),
    ):
        result = await mcts(simulations=1, **options).run(request(), engine, prm, Budget())
        assert [c["prior"] for c in result.summary()["root_children"]] == [0.3333] * 3
        assert engine.calls[0][1].logprobs is None


async def test_repeated_steps_are_one_child_carrying_their_shares(prm):
    engine = FakeEngine(lambda p, s, i: "same\n" if i < 2 else "other\n")
    result = await mcts(simulations=1, selection="uct").run(request(), engine, prm, Budget())
    assert result.summary()["root_children"] == [
        {"step": "same", "visits": 1, "value": 0.3, "prior": 0.6667},
        {"step": "other", "visits": 1, "value": 0.3, "prior": 0.3333},
    ]


async def test_rollouts_value_children_by_scored_whole_solutions():
    engine, orm, trace = FakeEngine(tree(depth=1)), answer_orm(), Trace(keep=True)
    result = await mcts(value="rollout", simulations=2).run(request(), engine, orm, Budget(), trace)

    # Sim 1: root -> three children, each rolled out once (a whole solution, no step stop) and scored by the ORM.
    # Sim 2: "good 2" (rollout scored 1.0) is selected; its children finish the solution, so they need no rollout.
    assert [(p.prefix, params.stop, n) for p, params, n in engine.calls] == [
        ("<think>", ("\n",), 3),
        ("<think>good 0\n", (), 1),
        ("<think>bad 1\n", (), 1),
        ("<think>good 2\n", (), 1),
        ("<think>good 2\n", ("\n",), 3),
    ]
    assert orm.calls[0] == [
        "<think>good 0\ngood 0.0</think>0.0",
        "<think>bad 1\ngood 1.0</think>1.0",
        "<think>good 2\ngood 2.0</think>2.0",
    ]
    assert [c.answer for c in result.trace.candidates] == ["0.0", "1.0", "2.0", "2.0", "2.1", "2.2"]
    assert result.spent.samples == 6  # three rollouts and three finished children
    assert result.summary()["root_children"][2] == {"step": "good 2", "visits": 4, "value": 1.0, "prior": 0.3333}
    assert result.choices[0].answer == "2.0" and result.choices[0].score == 1.0


async def test_the_sample_budget_ends_the_search():
    engine = FakeEngine(tree(depth=1))
    result = await mcts(value="rollout", simulations=50).run(request(), engine, answer_orm(), Budget(max_samples=4))
    assert [n for _, _, n in engine.calls] == [3, 1, 1, 1, 1]  # sim 2 may still finish one solution, not three
    assert result.spent.samples == 4 == len(result.trace.candidates)
    assert result.summary()["simulations"] == 2 and result.summary()["stop_reason"] == "max_samples"
    assert result.exhausted is None


async def test_simulations_default_to_the_sample_budget(prm):
    engine = FakeEngine(tree(depth=100))  # never finishes: only the simulation count stops it
    result = await mcts().run(request(), engine, prm, Budget(max_samples=4))
    assert len(engine.calls) == 5 and result.summary()["simulations"] == 4
    [best] = result.choices
    # no solution finished in the simulations: the best open path is completed by one rollout (the fifth call)
    assert best.finish_reason == "stop" and "\n" not in engine.calls[4][1].stop
    assert best.text.startswith("<think>good 0\ngood 0.0\n") and best.text.endswith("</think>" + best.answer)


async def test_an_open_path_is_returned_as_it_is_when_the_budget_refuses_its_rollout(prm):
    engine = FakeEngine(tree(depth=100))
    result = await mcts(simulations=2).run(request(), engine, prm, Budget(max_tokens=12))
    [best] = result.choices
    assert best.finish_reason == "length" and best.text.startswith("<think>good 0\n")
    assert all("\n" in params.stop for _, params, _ in engine.calls)  # no rollout was admitted


async def test_max_depth_closes_paths_and_an_exhausted_tree_stops(prm):
    engine, trace = FakeEngine(tree(depth=100)), Trace(keep=True)
    result = await mcts(max_depth=1, simulations=20).run(request(), engine, prm, Budget(), trace)
    assert len(engine.calls) == 1  # only the root grows; its three children are closed, one per simulation
    assert result.summary()["simulations"] == 4 and result.summary()["stop_reason"] == "tree_exhausted"
    assert messages(trace)[1:] == [
        "sim 2: closed depth 1 (good 0) unfinished, value 0.75, best so far none",
        "sim 3: closed depth 1 (good 2) unfinished, value 0.75, best so far none",
        "sim 4: closed depth 1 (bad 1) unfinished, value 0.25, best so far none",
    ]
    [best] = result.choices
    assert best.finish_reason == "length" and best.text == "<think>good 0\n" and best.score == 0.75


async def test_final_by_visits_returns_the_end_of_the_most_visited_path(prm):
    # c_puct = 0 exploits Q alone. Root: good 0 (.75), ok 1 (.5). Sim 2 grows good 0 into two wrong steps (0), so
    # Q(good 0) = .75 / 3 = .25; sims 3-5 grow ok 1 and both its children into ok answers (.5): 7 visits. Sim 6
    # turns to good 0's first child and finds the best answer (1.0) there, on the less visited path.
    kinds = {"": "go", "0": "zz", "1": "oo", "1.0": "oo", "1.1": "oo", "0.0": "xz"}
    options = {"c_puct": 0.0, "simulations": 6, "expansion_width": 2, "aggregation": "last"}
    runs = {}
    for final in ("visits", "score"):
        engine = FakeEngine(tree(2, kinds))
        runs[final] = await mcts(final=final, **options).run(request(), engine, prm, Budget())
    assert [c["visits"] for c in runs["visits"].summary()["root_children"]] == [5, 7]
    assert runs["visits"].choices[0].answer == "1.0.0" and runs["visits"].choices[0].score == 0.5
    assert runs["score"].choices[0].answer == "0.0.0" and runs["score"].choices[0].score == 1.0
    assert most_visited_terminal(Node()) is None


async def test_n_choices_are_distinct_answers(prm):
    result = await mcts(simulations=3).run(request(n=2), FakeEngine(tree(depth=1)), prm, Budget())
    assert [c.answer for c in result.choices] == ["0.0", "0.2"]


def test_check_refuses_what_the_search_cannot_serve(prm):
    assert registry.get("mcts") is MCTS
    with pytest.raises(InvalidRequestError, match="value='prm' needs a step verifier") as err:
        mcts().check(FakeEngine(), answer_orm())
    assert err.value.param == "verifier"
    mcts(value="rollout").check(FakeEngine(), answer_orm())  # a whole-answer verifier scores rollouts
    with pytest.raises(InvalidRequestError, match="needs a verifier; none is loaded"):
        mcts(value="rollout").check(FakeEngine(), None)
    no_prefix = FakeEngine(capabilities=EngineCapabilities(max_model_len=512, prefix_continuation=False))
    with pytest.raises(InvalidRequestError, match="continues partial solutions"):
        mcts().check(no_prefix, prm)


async def test_a_refused_request_generates_nothing():
    engine = FakeEngine(tree())
    with pytest.raises(InvalidRequestError, match="step verifier"):
        await mcts().run(request(), engine, answer_orm(), Budget())
    assert engine.calls == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"iterations": 4}, "iterations"),
        ({"simulations": 0}, "simulations"),
        ({"expansion_width": 0}, "expansion_width"),
        ({"expansion_width": 65}, "expansion_width"),
        ({"selection": "greedy"}, "selection"),
        ({"c_puct": -1}, "c_puct"),
        ({"c_uct": 101}, "c_uct"),
        ({"value": "orm"}, "value"),
        ({"final": "votes"}, "final"),
        ({"max_depth": 0}, "max_depth"),
        ({"step_max_tokens": 0}, "step_max_tokens"),
        ({"aggregation": "median"}, "aggregation"),
        ({"temperature": 3}, "temperature"),
        ({"answer_extraction": "regex"}, "answer_extraction"),
    ],
)
def test_options_are_validated(options, field):
    with pytest.raises(ValidationError) as err:
        MCTS.from_request(options)
    assert err.value.errors()[0]["loc"] == (field,)


async def test_request_max_tokens_bounds_each_path(prm):
    engine = FakeEngine(lambda p, s, i: "two tokens\n")
    result = await mcts(simulations=10).run(request(max_tokens=5), engine, prm, Budget())
    assert [params.token_cap for _, params, _ in engine.calls] == [5, 3, 1]
    [best] = result.choices
    assert best.finish_reason == "length" and best.num_tokens == 5
    assert best.text == "<think>two tokens\ntwo tokens\ntwo"
    assert result.summary()["stop_reason"] == "tree_exhausted" and result.summary()["tree_size"] == 4


async def test_a_time_budget_keeps_the_solutions_finished_so_far(prm):
    def responder(prompt, params, index):
        depth = len(FMT.steps(prompt.prefix))
        return f"good {depth}.{index}\n" if index else f"bad {depth}</think>{depth}"

    engine = FakeEngine(responder, token_delay=0.02)
    result = await mcts(simulations=1000).run(request(), engine, prm, Budget(max_seconds=0.3))
    assert result.exhausted == "max_seconds" and engine.active == 0
    assert result.summary()["stop_reason"] == "max_seconds" and result.summary()["simulations"] >= 2
    assert result.choices[0].finish_reason == "stop" and result.choices[0].score == 0.25
