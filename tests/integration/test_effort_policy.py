"""The effort policy: a replaceable file, checked at start-up; precedence of the effort fields; contradictions; the
per-sample cap of requests without max_tokens."""

from __future__ import annotations

import json

import pytest

from ponder.cli.main import main
from ponder.server.effort_policy import BUNDLED, EffortPolicyError, load_policy
from ponder.server.settings import ServerSettings
from ponder.strategies import registry
from ponder.testing import FakeEngine, TableVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app

MESSAGES = [{"role": "user", "content": "What is 2+3?"}]


def policy_file(tmp_path, name="policy.json", **changes) -> str:
    data = json.loads(BUNDLED.read_text())
    for key, value in changes.items():
        if key in data["levels"]:
            data["levels"][key] = value
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def app_with(policy: str | None = None, responder=None):
    engine = FakeEngine(
        responder or (lambda p, s, i: f"<think>2+3={5 if i % 2 == 0 else i}</think>{5 if i % 2 == 0 else i}")
    )
    verifiers = VerifierSet([TableVerifier({"5": 0.9}, default=0.1, name="table")])
    return fake_app(engine, ServerSettings(effort_policy=policy), verifiers)


async def post(app, **body):
    async with client(app) as c:
        return await c.post("/v1/chat/completions", json={"model": "fake-model", "messages": MESSAGES, **body})


async def test_an_operator_policy_changes_what_each_level_runs(tmp_path):
    low = {"strategy": "self_consistency", "max_samples": 3, "max_tokens": 500, "strategy_options": {"round_size": 3}}
    high = {"strategy": "best_of_n", "verifier": "table", "max_samples": 5}
    app, _ = app_with(policy_file(tmp_path, low=low, high=high))
    data = (await post(app, reasoning_effort="low")).json()
    assert data["ponder"]["strategy"] == "self_consistency" and data["ponder"]["spent"]["samples"] <= 3
    assert data["ponder"]["budget"]["max_tokens"] == 500
    data = (await post(app, thinking_level="high")).json()
    assert (data["ponder"]["strategy"], data["ponder"]["verifier"]) == ("best_of_n", "table")
    assert data["ponder"]["spent"]["samples"] == 5 and data["choices"][0]["message"]["content"] == "5"


async def test_precedence_budget_over_thinking_budget_over_effort():
    app, _ = app_with()
    levels = (await post(app, reasoning_effort="low")).json()["ponder"]
    assert levels["budget"]["max_samples"] == 4 and levels["effort"] == "low"
    thinking = (await post(app, reasoning_effort="low", thinking_budget=300)).json()["ponder"]
    assert thinking["thinking"]["tokens"] == 300 and thinking["budget"]["max_samples"] == 4  # per sample
    explicit = await post(app, reasoning_effort="low", thinking_budget=300, budget={"max_samples": 2, "max_tokens": 90})
    assert explicit.json()["ponder"]["budget"] | {"max_seconds": None} == {
        "max_samples": 2, "max_tokens": 90, "max_seconds": None
    }  # fmt: skip
    default = (await post(app)).json()["ponder"]
    assert default["strategy"] == "none" and default["budget"]["max_tokens"] == ServerSettings().limits.max_tokens


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"thinking_level": "high", "thinking_budget": 100}, "thinking_budget", "not both"),
        ({"reasoning_effort": "high", "thinking_budget": 0}, "thinking_budget", "turns extra compute off"),
        ({"reasoning_effort": "medium", "strategy": "none"}, "strategy", "contradicts"),
        ({"reasoning_effort": "none", "strategy": "best_of_n"}, "strategy", "decodes once"),
        ({"thinking_budget": 0, "strategy": "self_consistency"}, "strategy", "decodes once"),
        ({"reasoning_effort": "low", "thinking_level": "high"}, None, "not both"),
    ],
)
async def test_contradictory_fields_are_a_400(body, param, says):
    app, engine = app_with()
    resp = await post(app, **body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert says in err["message"] and (param is None or err["param"] == param)
    assert engine.calls == []


async def test_consistent_combinations_are_served():
    app, _ = app_with()
    served = [
        {"reasoning_effort": "high", "strategy": "self_consistency"},
        {"strategy": "none", "thinking_budget": 9},
        {"reasoning_effort": "minimal", "thinking_budget": 0},
    ]
    for body in served:
        assert (await post(app, **body, budget={"max_samples": 2})).status_code == 200, body


async def test_a_request_without_max_tokens_gets_the_per_sample_cap(tmp_path):
    long = " ".join(["word"] * 60)
    app, engine = app_with(policy_file(tmp_path, max_tokens_per_sample=7), lambda p, s, i: long)
    capped = (await post(app)).json()["choices"][0]
    assert capped["finish_reason"] == "length" and len(capped["message"]["content"].split()) == 7
    assert engine.calls[-1][1].token_cap == 7
    asked = (await post(app, max_tokens=20)).json()["choices"][0]  # the request's own limit wins
    assert len(asked["message"]["content"].split()) == 20 and engine.calls[-1][1].token_cap > 20
    default = (await post(app_with()[0])).json()
    assert default["choices"][0]["finish_reason"] == "stop"  # the bundled cap (4096) is above this answer


def test_the_bundled_policy_is_valid_and_documented():
    policy = load_policy()
    policy.check(registry.names(), {"table"})
    assert policy.max_tokens_per_sample == 4096
    assert {name: level.max_samples for name, level in policy.levels.items() if level.max_samples} == {
        "none": 1, "minimal": 1, "low": 4, "medium": 16, "high": 64,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"levels": {"low": {"strategy": "none"}}}, "missing none, minimal, medium, high, auto"),
        ({"high": {"strategy": "best_of_n", "samples": 3}}, "samples: Extra inputs are not permitted"),
        ({"low": {"strategy": "magic"}}, "levels.low.strategy: unknown strategy 'magic'"),
        ({"low": {"strategy": "best_of_n", "strategy_options": {"bogus": 1}}}, "levels.low.strategy_options: bogus"),
        ({"medium": {"strategy": "best_of_n", "verifier": "oracle"}}, "levels.medium.verifier: 'oracle'"),
        ({"max_tokens_per_sample": 0}, "max_tokens_per_sample: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_policy_stops_serve_before_the_engine_starts(tmp_path, changes, message):
    path = policy_file(tmp_path, **changes)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--engine", "hf", "--effort-policy", path])
    assert str(exit_.value).startswith(f"ponder serve: --effort-policy {path}: ") and message in str(exit_.value)


def test_unreadable_policy_files_say_why(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EffortPolicyError, match="not valid JSON"):
        load_policy(tmp_path / "bad.json")
    with pytest.raises(EffortPolicyError, match="cannot read it"):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "p.yaml").write_text(BUNDLED.read_text())  # JSON is YAML: the YAML loader reads it
    assert load_policy(tmp_path / "p.yaml").levels["high"].max_samples == 64
