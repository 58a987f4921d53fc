"""Strategies through the app (fake engine, rule verifiers): ponder block, usage, streaming, errors, policies."""

from __future__ import annotations

import asyncio
import re

from ponder.core.types import EngineCapabilities
from ponder.server.settings import Limits, ServerSettings
from ponder.testing import FakeEngine
from ponder.verifiers.policy import PolicyVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "What is 2+3?"}]


def answers(prompt, params, index):
    """Sample i answers 5 when i is even, else i (so 5 is the majority)."""
    answer = 5 if index % 2 == 0 else index
    return f"<think>2+3={answer}\n</think>{answer}"


class PrefersFive:
    """An outcome verifier: 1.0 for the answer 5."""

    name = "five"
    kind = "orm"

    async def score(self, problem, answers, reference=None):
        return [1.0 if a.endswith(">5") else 0.1 for a in answers]


class StepRule:
    """A step verifier: steps that are true sums score 0.9."""

    step_level = True

    name = "steps"
    kind = "prm"

    async def score(self, problem, answers, reference=None):
        return [0.5 for _ in answers]

    async def score_steps(self, problem, solutions):
        return [[0.9 if s == "2+3=5" else 0.1 for s in steps] for steps in solutions]


def app_with(verifiers=(), engine=None, **settings):
    engine = engine or FakeEngine(answers)
    vset = VerifierSet(list(verifiers)) if verifiers else None
    return fake_app(engine, ServerSettings(**settings), vset)


async def post(app, body, path="/v1/chat/completions"):
    async with client(app) as c:
        return await c.post(path, json={"model": MODEL, "messages": MESSAGES, **body})


async def test_best_of_n_reranks_and_reports_the_search():
    app, engine = app_with([PrefersFive()])
    resp = await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 4}, "return_trace": True})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["choices"][0]["message"]["content"] == "5"
    assert data["choices"][0]["message"]["reasoning_content"] == "2+3=5\n"
    ponder = data["ponder"]
    assert ponder["strategy"] == "best_of_n" and ponder["verifier"] == "five"
    assert ponder["spent"]["samples"] == 4 and ponder["scores"] == [1.0]
    assert len(ponder["trace"]["candidates"]) == 4
    usage = data["usage"]
    assert (
        usage["completion_tokens"] == ponder["spent"]["tokens"] == 4 * 2
    )  # fake tokens: "<think>2+3=5", "\n</think>5"
    # OpenAI's reasoning tokens: the candidates not returned, and the chosen one's thinking, which here is all of it
    # (its second token, "\n</think>5", closes the think block)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 8
    assert len(engine.calls) == 1 and engine.calls[0][2] == 4  # n samples in one engine call


async def test_n_best_distinct_answers():
    app, _ = app_with([PrefersFive()])
    data = (await post(app, {"strategy": "best_of_n", "n": 2, "budget": {"max_samples": 4}})).json()
    contents = [c["message"]["content"] for c in data["choices"]]
    assert contents[0] == "5" and contents[1] != "5" and len(set(contents)) == 2


async def test_self_consistency_votes_without_a_verifier():
    app, _ = app_with()
    data = (await post(app, {"strategy": "self_consistency", "budget": {"max_samples": 6}})).json()
    assert data["choices"][0]["message"]["content"] == "5"
    assert data["ponder"]["verifier"] is None


async def test_streaming_sends_progress_then_the_answer_then_usage():
    app, _ = app_with([PrefersFive()])
    body = {"strategy": "best_of_n", "budget": {"max_samples": 4}, "stream": True}
    body["stream_options"] = {"include_usage": True}
    events = sse_events((await post(app, body)).text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert re.search(r"4 candidates scored", reasoning), reasoning
    assert "".join(d.get("content", "") for d in deltas) == "5"
    last_reasoning = max(i for i, d in enumerate(deltas) if "reasoning_content" in d)
    first_content = min(i for i, d in enumerate(deltas) if "content" in d)
    assert last_reasoning < first_content
    finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["ponder"]["spent"]["samples"] == 4


async def test_step_strategy_without_a_step_verifier_is_a_400_before_any_work():
    app, engine = app_with([PrefersFive()])
    resp = await post(app, {"strategy": "beam_search"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "verifier" and "step verifier" in resp.json()["error"]["message"]
    assert engine.calls == []


async def test_prefix_continuation_is_required_up_front():
    engine = FakeEngine(answers, capabilities=EngineCapabilities(max_model_len=512, prefix_continuation=False))
    app, _ = app_with([StepRule()], engine=engine)
    resp = await post(app, {"strategy": "beam_search"})
    assert resp.status_code == 400 and engine.calls == []


async def test_unknown_verifier_names_the_loaded_ones():
    app, _ = app_with([PrefersFive(), StepRule()])
    err = (await post(app, {"strategy": "best_of_n", "verifier": "oracle"})).json()["error"]
    assert err["param"] == "verifier" and "five" in err["message"] and "steps" in err["message"]


async def test_budget_above_the_limit_is_clamped_and_said():
    app, _ = app_with([PrefersFive()], limits=Limits(max_samples=3))
    data = (await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 50}})).json()
    assert data["ponder"]["budget"]["max_samples"] == 3 and data["ponder"]["budget_clamped"] == ["max_samples"]
    assert data["ponder"]["spent"]["samples"] == 3


async def test_reasoning_effort_maps_to_strategy_and_budget():
    app, _ = app_with([PrefersFive()])
    data = (await post(app, {"reasoning_effort": "low"})).json()
    assert data["ponder"]["strategy"] == "best_of_n" and data["ponder"]["effort"] == "low"
    assert data["ponder"]["spent"]["samples"] == 4
    plain = (await post(app, {"reasoning_effort": "minimal"})).json()
    assert plain["ponder"]["strategy"] == "none"
    gemini = (await post(app, {"thinking_budget": 0})).json()
    assert gemini["ponder"]["strategy"] == "none"


async def test_logprobs_are_refused_under_a_search():
    app, _ = app_with([PrefersFive()])
    resp = await post(app, {"strategy": "best_of_n", "logprobs": True})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "logprobs"


async def test_content_policy_filters_candidates_and_refuses_when_all_violate():
    policy = PolicyVerifier({"forbidden": ["</think>5$"], "refusal": "I cannot answer that."}, name="safety")
    app, _ = app_with([PrefersFive(), policy])
    data = (await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 4}})).json()
    assert data["choices"][0]["message"]["content"] != "5"  # the best-scored answer violates the policy
    strict = PolicyVerifier({"forbidden": ["\\d"], "refusal": "I cannot answer that."}, name="safety")
    app, _ = app_with([PrefersFive(), strict])
    data = (await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 4}})).json()
    assert data["choices"][0]["finish_reason"] == "content_filter"
    assert data["choices"][0]["message"]["content"] == "I cannot answer that."


async def test_completions_route_serves_strategies_too():
    app, _ = app_with([PrefersFive()])
    async with client(app) as c:
        resp = await c.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "2+3=", "strategy": "best_of_n", "budget": {"max_samples": 4}},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["text"].endswith("5")


async def test_client_disconnect_cancels_the_search():
    engine = FakeEngine(answers, token_delay=0.05)
    app, _ = app_with([PrefersFive()], engine=engine)
    body = {"model": MODEL, "messages": MESSAGES, "strategy": "best_of_n", "stream": True}
    async with client(app) as c, c.stream("POST", "/v1/chat/completions", json=body) as resp:
        async for _line in resp.aiter_lines():
            break  # the role chunk arrived: the search is running; hang up
    for _ in range(100):
        if engine.active == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.active == 0


async def test_verifiers_and_strategies_are_listed():
    app, _ = app_with([PrefersFive(), StepRule()])
    async with client(app) as c:
        verifiers = (await c.get("/v1/verifiers")).json()
        strategies = (await c.get("/v1/strategies")).json()
    assert [v["name"] for v in verifiers["data"]] == ["five", "steps"]
    assert [v["is_step"] for v in verifiers["data"]] == [False, True] and verifiers["default"] in {"five", "steps"}
    by_name = {s["name"]: s for s in strategies["data"]}
    assert {"none", "best_of_n", "beam_search", "mcts"} <= set(by_name)
    assert by_name["beam_search"]["needs"] == ["verifier", "step_verifier", "prefix_continuation"]
    assert "expansions" in by_name["beam_search"]["options"]["properties"]
