"""Thinking on the wire: a lone ``</think>`` ends a thinking model's reasoning (streamed and not), and thinking
budgets close a sample's thought and let it answer, in chat and completions, from the request or the effort policy."""

from __future__ import annotations

import json

import pytest

from ponder.core.types import EngineCapabilities, Prompt
from ponder.server.effort_policy import BUNDLED, EffortPolicyError, load_policy
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app, sse_events

POLICY = "ponder/models/policy"  # its ponder.json declares think tags: a model known to think
MESSAGES = [{"role": "user", "content": "What is 12+7?"}]
THOUGHT = "<think> s1 s2 s3 s4 s5 s6 </think> 42"


def thinker(prompt: Prompt, params, index: int) -> str:
    """A thinking model: its thought, `7` after a thought closed for it, more thought after the cue."""
    partial = prompt.prefix if prompt.messages is not None else prompt.text.removeprefix("Q:")
    if THOUGHT.startswith(partial):
        return THOUGHT[len(partial) :]
    return " 7" if partial.endswith("</think>") else " s7 </think> 43"


async def chat(app, stream: bool = False, **body):
    async with client(app) as c:
        resp = await c.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": MESSAGES, "stream": stream, **body}
        )
    assert resp.status_code == 200, resp.text
    if not stream:
        return resp.json()
    events = [e for e in sse_events(resp.text) if e != "[DONE]"]
    deltas = [c["delta"] for e in events for c in e["choices"]]
    return {
        "reasoning": "".join(d.get("reasoning_content") or "" for d in deltas),
        "content": "".join(d.get("content") or "" for d in deltas),
        "usage": events[-1].get("usage"),
    }


def message(data: dict) -> tuple[str, str]:
    msg = data["choices"][0]["message"]
    return msg.get("reasoning_content") or "", msg["content"]


async def test_a_lone_closing_tag_ends_reasoning_streamed_and_not_and_in_searched_answers():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "12+7=19\n</think>19"), ServerSettings(model_sidecar=POLICY))
    assert message(await chat(app)) == ("12+7=19\n", "19")
    streamed = await chat(app, stream=True)
    assert (streamed["reasoning"], streamed["content"]) == ("12+7=19\n", "19")
    voted = await chat(app, strategy="self_consistency", budget={"max_samples": 2})
    assert message(voted) == ("12+7=19\n", "19") and voted["ponder"]["votes"] == {"19": 2}
    plain, _ = fake_app(FakeEngine(lambda p, s, i: "text</think>more"))  # no ponder.json: not known to think
    assert message(await chat(plain)) == ("", "text</think>more")


async def test_thinking_budget_closes_the_thought_and_the_sample_answers_in_chat():
    app, engine = fake_app(FakeEngine(thinker))
    data = await chat(app, thinking_budget=3, strategy="none", max_tokens=20)
    assert message(data) == (" s1 s2", " 7")
    assert data["usage"]["completion_tokens"] == 4  # 3 thinking tokens and the answer's
    assert data["ponder"]["thinking"] == {"tokens": 3, "extensions": 0, "cue": "Wait", "forced": 1, "extended": 0}
    assert engine.calls[-1][0].prefix == "<think> s1 s2</think>"
    streamed = await chat(app, stream=True, thinking_budget=3, strategy="none", max_tokens=20)
    assert (streamed["reasoning"], streamed["content"]) == (" s1 s2", " 7")
    searched = await chat(app, thinking_budget=3, strategy="self_consistency", budget={"max_samples": 3})
    assert message(searched)[1] == " 7" and searched["usage"]["completion_tokens"] == 3 * 4


async def test_thinking_budget_in_completions():
    app, _ = fake_app(FakeEngine(thinker))
    async with client(app) as c:
        body = {"model": "fake-model", "prompt": "Q:", "max_tokens": 20, "thinking_budget": 2, "strategy": "none"}
        data = (await c.post("/v1/completions", json=body)).json()
        streamed = sse_events((await c.post("/v1/completions", json={**body, "stream": True})).text)
    assert data["choices"][0]["text"] == "<think> s1</think> 7" and data["usage"]["completion_tokens"] == 3
    assert "".join(e["choices"][0]["text"] for e in streamed[:-1] if e["choices"]) == "<think> s1</think> 7"


async def test_the_effort_policy_sets_thinking_budgets_and_extensions(tmp_path):
    policy = json.loads(BUNDLED.read_text())
    policy["levels"]["high"] = {"strategy": "none", "thinking_budget": 40, "thinking_extensions": 1}
    policy["continuation_cue"] = "Wait"
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    app, _ = fake_app(FakeEngine(thinker), ServerSettings(effort_policy=str(path)))
    data = await chat(app, reasoning_effort="high", max_tokens=40)
    assert message(data) == (" s1 s2 s3 s4 s5 s6 Wait s7 ", " 7")
    assert data["ponder"]["thinking"] == {"tokens": 40, "extensions": 1, "cue": "Wait", "forced": 0, "extended": 1}
    budget = await chat(app, reasoning_effort="high", thinking_budget=3, max_tokens=40)  # the request's wins
    assert message(budget) == (" s1 s2", " 7")


async def test_an_engine_that_cannot_continue_refuses_a_thinking_budget():
    caps = EngineCapabilities(max_model_len=512, prefix_continuation=False)
    app, engine = fake_app(FakeEngine(thinker, capabilities=caps))
    async with client(app) as c:
        resp = await c.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": MESSAGES, "thinking_budget": 3, "strategy": "none"},
        )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "thinking_budget"
    assert engine.calls == []


def test_the_effort_policy_refuses_bad_thinking_fields(tmp_path):
    for level, says in [
        ({"strategy": "none", "thinking_budget": 0}, "thinking_budget"),
        ({"strategy": "none", "thinking_extensions": 99}, "thinking_extensions"),
    ]:
        policy = json.loads(BUNDLED.read_text())
        policy["levels"]["high"] = level
        path = tmp_path / f"{says}.json"  # policies are cached by path
        path.write_text(json.dumps(policy))
        with pytest.raises(EffortPolicyError, match=f"levels.high.{says}"):
            load_policy(str(path))
