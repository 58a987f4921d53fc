"""compute_optimal: probe agreement -> difficulty level -> route; probe samples reused, spending counted once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from ponder.core.errors import InvalidRequestError
from ponder.core.types import Budget, EngineCapabilities, Prompt, SamplingParams
from ponder.strategies import registry
from ponder.strategies.base import Options, Search, Strategy, StrategyRequest, StrategyResult, best_distinct
from ponder.strategies.compute_optimal import DEFAULT_ROUTES, PROBE, ComputeOptimal, difficulty
from ponder.strategies.scoring import score_candidates
from ponder.strategies.trace import Candidate, Trace
from ponder.testing import FakeEngine, RulePRM, TableVerifier

PROMPT = Prompt.chat([{"role": "user", "content": "What is 2+3?"}])


@dataclass
class DrawerResult(StrategyResult):
    drawn: int = 0

    def summary(self) -> dict[str, Any]:
        return {"drawn": self.drawn}


class Drawer(Strategy):
    """Draws exactly budget.max_samples solutions in one call and keeps the best-scored; records what it was given."""

    class Options(Options):
        tag: int = 0

    Result = DrawerResult

    async def explore(self, search: Search[DrawerResult]) -> list[Candidate]:
        request, trace = search.request, search.trace
        trace.emit("drawer", tag=self.options.tag, budget=search.budget)
        samples = await search.engine.generate(request.prompt, request.params, search.budget.max_samples)
        batch = [trace.add(Candidate(s.text, s.num_tokens, s.finish_reason), message="") for s in samples]
        await score_candidates(search.verifier, request, batch)
        search.result.drawn = len(batch)
        return best_distinct(batch, request.n)


class NeedsPRM(Drawer):
    needs_step_verifier = True
    needs_prefix_continuation = True


registry.register("test_co_draw")(Drawer)
registry.register("test_co_prm")(NeedsPRM)


def routes(**overrides: Any) -> dict[str, Any]:
    """Every level to the drawer tagged with its level; ``L<k>=`` replaces a level."""
    table: dict[str, Any] = {str(k): {"strategy": "test_co_draw", "strategy_options": {"tag": k}} for k in range(1, 6)}
    table.update({k[1:]: v for k, v in overrides.items()})
    return table


def scripted(probe: list[str], later: str = "9", capabilities: EngineCapabilities | None = None) -> FakeEngine:
    """The first call answers ``probe[index]`` ("" = no extractable answer); later calls answer ``later``."""
    engine = FakeEngine(capabilities=capabilities)

    def respond(prompt, params, index):
        answer = probe[index] if not engine.calls else later
        return f"<think>2+3={answer}\n</think>{answer}" if answer else "<think>2+3="

    engine.responder = respond
    return engine


def by_answer(scores: dict[str, float]) -> TableVerifier:
    """A whole-answer verifier with a score per visible answer, 0.5 for the others."""
    return TableVerifier(scores, default=0.5, name="by_answer")


def flat_prm() -> RulePRM:
    """A step verifier scoring every step 0.8."""
    return RulePRM({}, default=0.8, name="prm")


async def run(engine, options=None, verifier=None, budget=16, n=1):
    trace = Trace(keep=True)
    strategy = ComputeOptimal.from_request(options or {})
    request = StrategyRequest(PROMPT, SamplingParams(), n)
    result = await strategy.run(request, engine, verifier, Budget(max_samples=budget), trace)
    return result, trace


def messages(trace: Trace) -> list[str]:
    return [e.data["message"] for e in trace.events if e.data.get("message")]


def drawer_calls(trace: Trace) -> list[tuple[int, Budget]]:
    return [(e.data["tag"], e.data["budget"]) for e in trace.events if e.kind == "drawer"]


@pytest.mark.parametrize(
    ("probe", "agreement", "level"),
    [
        (["5", "5", "5", "5"], 1.0, 1),
        (["5", "5", "5", "6"], 0.75, 2),
        (["5", "5", "6", "7"], 0.5, 3),
        (["5", "6", "7", "8"], 0.25, 4),
        (["", "", "", ""], 0.0, 5),
    ],
)
async def test_probe_agreement_sets_the_level_and_the_route(probe, agreement, level):
    result, trace = await run(scripted(probe), {"routes": routes(L1={"strategy": PROBE})})
    assert (result.difficulty, result.agreement) == (level, agreement)
    if level == 1:
        assert result.routed_to == PROBE and drawer_calls(trace) == []
        assert result.spent.samples == 4 and [c.answer for c in result.choices] == ["5"]
        assert "difficulty 1/5 (agreement 1.00) -> probe majority, no more samples" in messages(trace)
    else:
        assert result.routed_to == "test_co_draw"
        assert [tag for tag, _ in drawer_calls(trace)] == [level]  # the level's own route ran, once
        assert f"difficulty {level}/5 (agreement {agreement:.2f}) -> test_co_draw, 12 samples" in messages(trace)
    assert result.summary()["difficulty"] == level and result.summary()["routed_to"] == result.routed_to


def test_difficulty_levels_follow_the_thresholds():
    assert [difficulty(c) for c in (1.0, 0.95, 0.9, 0.75, 0.6, 0.5, 0.3, 0.25, 0.2, 0.0)] == [
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    assert [difficulty(c, (0.9, 0.8, 0.7, 0.6)) for c in (0.85, 0.65, 0.1)] == [2, 4, 5]


async def test_custom_thresholds_move_the_levels():
    result, _ = await run(
        scripted(["5", "5", "5", "6"]), {"routes": routes(), "level_thresholds": [0.7, 0.6, 0.5, 0.4]}
    )
    assert result.difficulty == 1  # 0.75 agreement clears the first threshold


async def test_verifier_score_lowers_the_confidence():
    engine = scripted(["5", "5", "5", "5"])
    result, trace = await run(engine, {"routes": routes()}, by_answer({"5": 0.2}))
    assert result.mean_score == pytest.approx(0.2)
    assert result.difficulty == 3  # 0.5 * 1.0 + 0.5 * 0.2 = 0.6
    assert "difficulty 3/5 (agreement 1.00, mean score 0.20) -> test_co_draw, 12 samples" in messages(trace)
    result, _ = await run(
        scripted(["5", "5", "5", "5"]),
        {"routes": routes(), "verifier_weight": 0.0},
        by_answer({}),
    )
    assert result.difficulty == 1


async def test_logit_scores_are_squashed_before_averaging():
    result, _ = await run(scripted(["5", "5", "5", "5"]), {"routes": routes()}, by_answer({"5": 4.0}))
    assert result.mean_score == pytest.approx(0.982, abs=1e-3) and result.difficulty == 1


async def test_spending_is_counted_once_and_probe_samples_are_reused():
    engine = scripted(["5", "6", "7", "8"], later="9")
    verifier = by_answer({"6": 0.9, "9": 0.1})
    result, trace = await run(engine, {"routes": routes()}, verifier, budget=16)
    [(tag, budget)] = drawer_calls(trace)
    assert tag == 4 and budget.max_samples == 12  # what the probe left
    assert result.spent.samples == 16 == 4 + 12 and len(engine.calls) == 2
    assert len(trace.candidates) == 16
    assert result.choices[0].answer == "6"  # a probe sample beats everything the routed strategy drew
    assert result.spent.verifier_calls == 2  # the probe's batch and the drawer's batch
    assert result.summary()["routed"] == {"drawn": 12}
    assert result.summary()["probe_samples"] == 4 and result.summary()["routed_samples"] == 12


async def test_a_budget_cut_in_the_routed_strategy_returns_the_best_of_the_pool():
    engine = scripted(["5", "6", "7", "8"])
    strategy = ComputeOptimal.from_request({"routes": routes()})
    request = StrategyRequest(PROMPT, SamplingParams())
    verifier = by_answer({"7": 0.9})
    # the probe spends 8 of the 10 tokens; the drawer's 12 samples cannot be admitted
    result = await strategy.run(request, engine, verifier, Budget(max_samples=16, max_tokens=10))
    assert result.exhausted == "max_tokens" and result.spent.samples == 4 and len(engine.calls) == 1
    assert result.choices[0].answer == "7" and result.routed_to == "test_co_draw"
    assert result.summary()["routed"] == {"drawn": 0}


async def test_budget_fraction_sizes_the_routed_strategy():
    table = routes(L3={"strategy": "test_co_draw", "strategy_options": {"tag": 3}, "budget_fraction": 0.25})
    result, trace = await run(scripted(["5", "5", "6", "7"]), {"routes": table}, budget=16)
    assert drawer_calls(trace)[0][1].max_samples == 3  # floor(0.25 * 12)
    assert result.spent.samples == 7 and result.routed_samples == 3


async def test_a_probe_that_spends_the_budget_stops_there():
    engine = scripted(["5", "6", "7", "8"])
    result, trace = await run(engine, {"routes": routes(), "probe_samples": 8}, budget=4)
    assert len(engine.calls) == 1 and engine.calls[0][2] == 4  # the probe is capped by the budget
    assert result.difficulty == 4 and result.routed_to == PROBE and result.exhausted is None
    assert "difficulty 4/5 (agreement 0.25) -> probe majority, no more samples (the probe used the whole budget)" in (
        messages(trace)
    )


async def test_probe_majority_returns_the_n_most_voted():
    result, _ = await run(scripted(["5", "6", "5", "7"]), {"routes": routes(), "probe_samples": 4}, budget=4, n=2)
    assert [c.answer for c in result.choices] == ["5", "6"]


async def test_routes_to_a_real_voting_strategy_that_counts_the_probe_votes():
    table = routes(L3={"strategy": "self_consistency", "strategy_options": {"round_size": 8}, "budget_fraction": 0.5})
    engine = scripted(["5", "5", "6", "7"], later="6")
    result, _ = await run(engine, {"routes": table}, budget=12)
    assert result.routed_to == "self_consistency" and result.routed_samples == 4
    assert result.spent.samples == 8
    assert result.choices[0].answer == "6"  # 6 x5 against 5 x2: the probe's votes are in the pool
    assert result.summary()["routed"]["counts"] == {"6": 5, "5": 2, "7": 1}


async def test_adaptive_best_of_n_counts_a_confident_probe_sample_and_draws_nothing_more():
    table = routes(L4={"strategy": "best_of_n", "strategy_options": {"stop_score": 0.9}})
    engine = scripted(["5", "6", "7", "8"])  # all different: level 4
    result, _ = await run(engine, {"routes": table}, by_answer({"6": 0.95}), budget=16)
    assert result.routed_to == "best_of_n" and len(engine.calls) == 1 and result.spent.samples == 4
    assert result.choices[0].answer == "6" and result.summary()["routed"]["confident"] is True


async def test_adaptive_best_of_n_after_an_unsure_probe_draws_until_confident():
    table = routes(L4={"strategy": "best_of_n", "strategy_options": {"stop_score": 0.9}})
    engine = scripted(["5", "6", "7", "8"], later="9")
    result, _ = await run(engine, {"routes": table}, by_answer({"9": 0.95}), budget=16)
    assert [n for _, _, n in engine.calls] == [4, 4]  # the probe, then one chunk of 4
    assert result.choices[0].answer == "9" and result.spent.samples == 8


async def test_default_routes_pick_what_the_engine_and_verifier_can_serve():
    strategy = ComputeOptimal()
    engine = FakeEngine()
    assert strategy._route(1, engine, None)[0].strategy == PROBE
    assert strategy._route(2, engine, None)[0].strategy == "self_consistency"
    assert strategy._route(2, engine, by_answer({}))[0].strategy == "best_of_n"
    assert strategy._route(4, engine, None)[0].strategy == "self_consistency"
    assert strategy._route(4, engine, by_answer({}))[0].strategy == "best_of_n"
    has_beam = "beam_search" in registry.names()
    assert strategy._route(5, engine, flat_prm())[0].strategy == ("beam_search" if has_beam else "best_of_n")
    no_prefix = FakeEngine(capabilities=EngineCapabilities(max_model_len=512, prefix_continuation=False))
    assert strategy._route(5, no_prefix, flat_prm())[0].strategy == "best_of_n"
    named = {r.strategy for alternatives in DEFAULT_ROUTES.values() for r in alternatives}
    assert named <= {PROBE, *registry.BUILTIN}


async def test_default_routes_end_to_end_without_a_verifier():
    result, trace = await run(scripted(["5", "6", "7", "8"], later="6"), budget=16)
    assert result.difficulty == 4 and result.routed_to == "self_consistency"
    assert result.spent.samples <= 16 and result.choices[0].answer == "6"
    assert "difficulty 4/5 (agreement 0.25) -> self_consistency, 12 samples" in messages(trace)


async def test_alternatives_fall_through_to_the_first_that_fits():
    table = routes(L4=[{"strategy": "test_co_prm", "strategy_options": {"tag": 40}}, {"strategy": "test_co_draw"}])
    options = {"routes": table, "verifier_weight": 0.0}  # agreement alone: level 4
    result, trace = await run(scripted(["5", "6", "7", "8"]), options, by_answer({}))
    assert result.routed_to == "test_co_draw" and drawer_calls(trace)[0][0] == 0
    result, trace = await run(scripted(["5", "6", "7", "8"]), options, flat_prm())
    assert result.routed_to == "test_co_prm" and drawer_calls(trace)[0][0] == 40


async def test_a_level_nothing_can_serve_is_refused_before_any_work():
    engine = scripted(["5", "6", "7", "8"])
    with pytest.raises(InvalidRequestError, match=r"No route for difficulty 2 .*test_co_prm \(needs a step verifier\)"):
        await run(engine, {"routes": routes(L2={"strategy": "test_co_prm"})}, by_answer({}))
    assert engine.calls == []


def test_unknown_route_strategy_lists_the_valid_ones():
    with pytest.raises(ValidationError) as err:
        ComputeOptimal.from_request({"routes": routes(L4={"strategy": "beam_serch"})})
    message = str(err.value)
    assert "routes level 4: unknown strategy 'beam_serch'. Valid values: probe, " in message
    assert "test_co_draw" in message and "self_consistency" in message


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"routes": {k: v for k, v in routes().items() if k != "3"}}, "missing: 3"),
        ({"routes": routes(L6={"strategy": PROBE})}, "unknown: 6"),
        ({"routes": routes(L2={"strategy": "auto"})}, "cannot route to itself"),
        ({"routes": routes(L2={"strategy": "compute_optimal"})}, "cannot route to itself"),
        ({"routes": routes(L2={"strategy": "test_co_draw", "strategy_options": {"tag": "x"}})}, "tag"),
        ({"routes": routes(L2={"strategy": "test_co_draw", "budget_fraction": 0})}, "budget_fraction"),
        ({"routes": routes(L2={"strategy": "test_co_draw", "budget": 3})}, "budget"),
        ({"routes": routes(L2=[])}, "at least one route"),
        ({"routes": routes(L1={"strategy": PROBE, "strategy_options": {"tag": 1}})}, "takes no strategy_options"),
        ({"probe_samples": 0}, "probe_samples"),
        ({"probe_samples": 65}, "probe_samples"),
        ({"level_thresholds": [0.5, 0.6, 0.3, 0.1]}, "strictly decreasing"),
        ({"level_thresholds": [0.9, 0.5]}, "level_thresholds"),
        ({"verifier_weight": 1.5}, "verifier_weight"),
        ({"answer_extraction": "first_number"}, "answer_extraction"),
        ({"aggregation": "max"}, "aggregation"),
        ({"route": {}}, "route"),
    ],
)
def test_invalid_options_are_refused(options, match):
    with pytest.raises(ValidationError, match=match):
        ComputeOptimal.from_request(options)


def test_auto_is_an_alias():
    assert registry.get("auto") is ComputeOptimal
