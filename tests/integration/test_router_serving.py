"""`reasoning_effort: auto` on the real app follows the server's router file; `--router none` and bad files."""

from __future__ import annotations

import json

import pytest

from ponder.cli.main import main
from ponder.server.router_policy import BUNDLED_ROUTER, load_server_router
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine, RulePRM
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app
from tests.unit.test_router import policy


def router_file(tmp_path, **overrides) -> str:
    """The unit tests' agreement-only router, for the PRM, its arms best_of_n (16 in all) and self_consistency."""
    arms = [
        {"name": "probe", "strategy": "probe"},
        {"name": "eight", "strategy": "self_consistency", "samples": 8},
        {"name": "sixteen", "strategy": "best_of_n", "samples": 16, "includes_probe": True},
    ]
    path = tmp_path / "router.json"
    path.write_text(json.dumps(policy(verifier="prm", arms=arms, **overrides)))
    return str(path)


def answers(*texts: str) -> FakeEngine:
    """The probe's four samples answer ``texts``; every later sample answers 9."""
    engine = FakeEngine()

    def respond(prompt, params, index):
        answer = texts[index] if not engine.calls else "9"
        return f"<think>2+3={answer}\n</think>{answer}"

    engine.responder = respond
    return engine


async def ask(router: str | None, engine: FakeEngine) -> dict:
    verifiers = VerifierSet([RulePRM({}, default=0.8, name="prm")], default="prm")
    app, _ = fake_app(engine, ServerSettings(router=router), verifiers=verifiers)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "2+3?"}], "reasoning_effort": "auto"}
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["ponder"]


@pytest.mark.parametrize(("probe", "level", "routed", "samples"), [
    (("5", "5", "5", "5"), 1, "probe", 4),
    (("5", "6", "7", "8"), 5, "best_of_n", 16),
])  # fmt: skip
async def test_auto_follows_the_router_file(tmp_path, probe, level, routed, samples):
    ponder = await ask(router_file(tmp_path), answers(*probe))
    assert ponder["strategy"] == "compute_optimal" and ponder["router"] is True
    assert ponder["difficulty"] == level and ponder["routed_to"] == routed and ponder["spent"]["samples"] == samples
    assert ponder["probe"]["agreement"] == {1: 1.0, 5: 0.25}[level]


async def test_router_none_keeps_the_fixed_thresholds(tmp_path):
    ponder = await ask("none", answers("5", "5", "5", "5"))
    assert ponder["router"] is False and ponder["solve_rate"] is None


def test_the_bundled_router_loads_and_reads_the_prm():
    router = load_server_router(None)
    assert BUNDLED_ROUTER.is_file() and router is not None and router.verifier == "prm"
    assert load_server_router("none") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{", "not valid JSON"),
        (json.dumps({"version": 1}), "verifier: Field required"),
        (json.dumps(policy(routes={str(k): "eight" for k in range(1, 6)}, arms=[
            {"name": "eight", "strategy": "no_such_strategy", "samples": 8}])), "unknown strategy 'no_such_strategy'"),
    ],
)  # fmt: skip
def test_a_bad_router_file_stops_serve_before_the_engine_starts(tmp_path, content, message):
    path = tmp_path / "router.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--engine", "hf", "--router", str(path)])
    assert str(exit_.value).startswith(f"ponder serve: --router {path}") and message in str(exit_.value)
