"""The learned router: its file is validated, its features are online ones, and compute_optimal follows it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ponder.core.types import Budget, SamplingParams
from ponder.strategies.base import StrategyRequest
from ponder.strategies.compute_optimal import ComputeOptimal, check_router
from ponder.strategies.router import (
    RouterFileError,
    load_router,
    parse_router,
    probe_features,
    prompt_question,
    question_features,
)
from ponder.strategies.trace import Trace
from tests.unit.test_strategy_compute_optimal import PROMPT, by_answer, drawer_calls, scripted


def policy(**overrides: Any) -> dict[str, Any]:
    """A router reading only the probe's agreement: all agree -> level 1 (probe), all differ -> level 5 (16 samples
    in all, the probe's 4 among them); the levels between draw 8 more."""
    data = {
        "version": 1,
        "verifier": "by_answer",
        "probe_samples": 4,
        "difficulty": {"features": ["agreement"], "mean": [0.0], "scale": [1.0], "weights": [5.0], "bias": -2.5},
        "cuts": [0.9, 0.7, 0.5, 0.3],
        "arms": [
            {"name": "probe", "strategy": "probe"},
            {"name": "eight", "strategy": "test_co_draw", "strategy_options": {"tag": 8}, "samples": 8},
            {
                "name": "sixteen",
                "strategy": "test_co_draw",
                "strategy_options": {"tag": 16},
                "samples": 16,
                "includes_probe": True,
            },
        ],
        "routes": {"1": "probe", "2": "eight", "3": "eight", "4": "eight", "5": "sixteen"},
        "lambda_tokens": 0.001,
    }
    data.update(overrides)
    return data


async def run(engine, router, options=None, verifier=None, budget=64):
    trace = Trace(keep=True)
    strategy = ComputeOptimal.from_request(options or {})
    strategy.use_router(parse_router(router))
    result = await strategy.run(StrategyRequest(PROMPT, SamplingParams()), engine, verifier, Budget(budget), trace)
    return result, trace


def test_question_features_count_numbers_digits_and_products():
    assert question_features("State the final answer: 12 + 345 - 6 =") == {
        "q_numbers": 3.0,
        "q_max_digits": 3.0,
        "q_digits": 6.0,
        "q_mul": 0.0,
    }
    assert question_features("Solve: 374 * 4. Give only the result.")["q_mul"] == 1.0


def test_probe_features_read_agreement_scores_and_length():
    f = probe_features(["5", "5", "6", None], [0.9, 0.7, 0.2, 0.0], [10, 20, 30, 40])
    assert f["agreement"] == 0.5 and f["distinct"] == 0.5 and f["unanswered"] == 0.25
    assert f["score_top"] == pytest.approx(0.8) and f["score_max"] == 0.9 and f["score_min"] == 0.0
    assert f["score_mean"] == pytest.approx(0.45) and f["tokens_mean"] == 25.0
    assert probe_features(["5", "5"], None, [1, 1])["score_mean"] == 0.0  # no verifier: scores read as 0


def test_the_question_is_the_last_user_turn():
    messages = [{"role": "user", "content": "old 1+1"}, {"role": "assistant", "content": "2"}]
    assert prompt_question([*messages, {"role": "user", "content": [{"type": "text", "text": "3*4"}]}], None) == "3*4"
    assert prompt_question(None, "raw 9") == "raw 9"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version 2 is not supported"),
        ({"cuts": [0.9, 0.9, 0.5, 0.3]}, "cuts must be four strictly decreasing values"),
        ({"routes": {"1": "probe", "2": "eight", "3": "eight", "4": "eight"}}, "missing: 5"),
        ({"routes": {str(k): "nine" for k in range(1, 6)}}, "no arm named 'nine'"),
        ({"difficulty": {"features": ["shoe_size"], "mean": [0], "scale": [1], "weights": [1], "bias": 0}}, "shoe"),
        ({"difficulty": {"features": ["agreement"], "mean": [0], "scale": [0], "weights": [1], "bias": 0}}, "scale"),
        ({"arms": [{"name": "probe", "strategy": "probe", "samples": 3}]}, "samples must be 0 exactly"),
        ({"lambda_tokens": -1}, "lambda_tokens"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_router_is_refused_naming_what_is_wrong(tmp_path, change, message):
    path = tmp_path / "router.json"
    path.write_text(json.dumps(policy(**change)))
    with pytest.raises(RouterFileError, match=message) as exc:
        load_router(path)
    assert str(path) in str(exc.value)


def test_unreadable_and_non_json_files_are_refused(tmp_path):
    with pytest.raises(RouterFileError, match="cannot read it"):
        load_router(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(RouterFileError, match="not valid JSON"):
        load_router(tmp_path / "bad.json")


def test_arms_must_name_registered_strategies_with_valid_options():
    check_router(parse_router(policy()))
    arms = [{"name": "probe", "strategy": "probe"}, {"name": "x", "strategy": "nope", "samples": 4}]
    with pytest.raises(ValueError, match="arm 'x': unknown strategy 'nope'"):
        check_router(parse_router(policy(arms=arms, routes={str(k): "probe" for k in range(1, 6)})))
    arms[1] = {"name": "x", "strategy": "test_co_draw", "strategy_options": {"tag": "many"}, "samples": 4}
    with pytest.raises(ValueError, match="invalid strategy_options for 'test_co_draw'"):
        check_router(parse_router(policy(arms=arms, routes={str(k): "probe" for k in range(1, 6)})))


async def test_an_easy_prompt_stops_at_the_probe():
    result, trace = await run(scripted(["5", "5", "5", "5"]), policy(), verifier=by_answer({}))
    assert result.router and result.difficulty == 1 and result.routed_to == "probe"
    assert result.spent.samples == 4 and drawer_calls(trace) == []
    assert result.solve_rate == pytest.approx(0.924, abs=1e-3)  # sigmoid(5 * 1.0 - 2.5)
    summary = result.summary()
    assert summary["probe"]["agreement"] == 1.0 and summary["probe"]["q_numbers"] == 2.0 and summary["router"]


async def test_a_hard_prompt_gets_its_levels_arm_with_the_probe_counted_in():
    result, trace = await run(scripted(["5", "6", "7", "8"]), policy(), verifier=by_answer({}))
    assert result.difficulty == 5 and result.routed_to == "test_co_draw"
    [(tag, budget)] = drawer_calls(trace)
    assert tag == 16 and budget.max_samples == 12  # 16 in all, the probe's 4 among them
    assert result.spent.samples == 16


async def test_a_middle_prompt_draws_its_arms_samples_on_top_of_the_probe():
    result, trace = await run(scripted(["5", "5", "6", "7"]), policy(), verifier=by_answer({}))
    assert result.difficulty == 3  # sigmoid(0) = 0.5: below 0.7, not below 0.5
    [(tag, budget)] = drawer_calls(trace)
    assert tag == 8 and budget.max_samples == 8
    assert result.spent.samples == 12


async def test_the_arm_is_capped_by_the_requests_budget():
    _, trace = await run(scripted(["5", "6", "7", "8"]), policy(), verifier=by_answer({}), budget=10)
    assert drawer_calls(trace)[0][1].max_samples == 6


async def test_the_probe_arm_can_return_the_best_scored_answer():
    router = policy(probe_answer="best_score", routes={str(k): "probe" for k in range(1, 6)})
    result, _ = await run(scripted(["5", "5", "5", "6"]), router, verifier=by_answer({"6": 0.9, "5": 0.1}))
    assert result.choices[0].answer == "6"
    result, _ = await run(
        scripted(["5", "5", "5", "6"]), policy(routes=router["routes"]), verifier=by_answer({"6": 0.9})
    )
    assert result.choices[0].answer == "5"  # the default: the majority


@pytest.mark.parametrize(
    ("options", "verifier_name", "level"),
    [
        ({}, "another", 4),  # the router's features read by_answer's scores, not these
        ({"router": False}, "by_answer", 4),
        ({"probe_samples": 4}, "by_answer", 4),  # the request's own probe: its own rule
        ({"level_thresholds": [0.9, 0.8, 0.7, 0.6]}, "by_answer", 5),
    ],
)
async def test_the_fixed_rule_applies_where_the_router_does_not(options, verifier_name, level):
    verifier = by_answer({})
    verifier.name = verifier_name
    result, _ = await run(scripted(["5", "6", "7", "8"]), policy(), options, verifier)
    assert not result.router and result.solve_rate is None
    assert result.difficulty == level  # the thresholds on confidence 0.5 * 0.25 + 0.5 * 0.5
