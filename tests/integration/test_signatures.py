"""Thought signatures on chat completions: issued per choice, checked and restored next turn, refused when bad."""

from __future__ import annotations

import logging

import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import ServerSettings, SignatureSettings
from ponder.server.signatures import SignatureCodec, Turn, conversation_hash
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"
KEY = SignatureSettings(keys=("k1-secret",))
QUESTION = {"role": "user", "content": "two plus two"}
FOLLOW_UP = {"role": "user", "content": "and times three?"}


def thinking_engine() -> FakeEngine:
    return FakeEngine(lambda p, s, i: f"<think>turn {len(p.messages)} sample {i}</think> 4")


def app_with(keys: SignatureSettings = KEY, engine: FakeEngine | None = None):
    return fake_app(engine or thinking_engine(), ServerSettings(signatures=keys))


async def chat(app, messages, **extra):
    async with client(app) as c:
        return await c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, **extra})


async def first_turn(app) -> dict:
    resp = await chat(app, [QUESTION])
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]


def open_state(signature: str, turns: list[dict], keys: SignatureSettings = KEY):
    history = [Turn(m["role"], m["content"]) for m in turns]
    return SignatureCodec(keys).open(signature, conversation_hash(history), "test")


def assert_refused(resp, index: int, why: str):
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_thought_signature" and err["type"] == "invalid_request_error"
    assert err["param"] == f"messages[{index}].thought_signature"
    assert f"messages[{index}]" in err["message"] and why in err["message"], err["message"]


async def test_each_choice_carries_a_signature_that_holds_its_reasoning():
    app, _ = app_with()
    resp = await chat(app, [QUESTION], n=2)
    choices = resp.json()["choices"]
    for i, choice in enumerate(choices):
        msg = choice["message"]
        assert msg["extra_content"] == {"google": {"thought_signature": msg["thought_signature"]}}
        state = open_state(msg["thought_signature"], [QUESTION])
        assert state.reasoning == f"turn 1 sample {i}" and state.strategy == "none"
        assert state.spent["tokens"] == 5
    assert choices[0]["message"]["thought_signature"] != choices[1]["message"]["thought_signature"]


async def test_signature_sent_back_restores_the_reasoning_into_the_context():
    app, engine = app_with()
    msg = await first_turn(app)
    answer = {"role": "assistant", "content": msg["content"], "thought_signature": msg["thought_signature"]}
    resp = await chat(app, [QUESTION, answer, FOLLOW_UP])
    assert resp.status_code == 200, resp.text
    restored = engine.calls[-1][0].messages[1]
    assert restored == {"role": "assistant", "content": "<think>turn 1 sample 0</think> 4"}
    # the new answer is bound to the longer conversation
    second = resp.json()["choices"][0]["message"]["thought_signature"]
    assert open_state(second, [QUESTION, answer, FOLLOW_UP]).reasoning == "turn 3 sample 0"


async def test_gemini_placement_is_accepted_and_drop_policy_keeps_reasoning_out():
    app, engine = app_with(SignatureSettings(keys=KEY.keys, reasoning="drop"))
    msg = await first_turn(app)
    answer = {"role": "assistant", "content": msg["content"], "extra_content": msg["extra_content"]}
    assert (await chat(app, [QUESTION, answer, FOLLOW_UP])).status_code == 200
    assert engine.calls[-1][0].messages[1] == {"role": "assistant", "content": " 4"}
    tampered = {"google": {"thought_signature": msg["thought_signature"][:-8] + "AAAAAAAA"}}
    resp = await chat(app, [QUESTION, {**answer, "extra_content": tampered}, FOLLOW_UP])
    assert_refused(resp, 1, "failed authentication")


def _flip(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda t: _flip(t, len(t) // 2), "failed authentication"),  # tampered ciphertext
        (lambda t: _flip(t, 3), "does not hold"),  # a header byte: the key id no longer matches
        (lambda t: t[: len(t) - 12], "failed authentication"),  # truncated by whole base64 quads: still decodable
        (lambda t: t[:20], "truncated"),
        (lambda t: "not base64 at all!", "malformed"),
    ],
)
async def test_damaged_signatures_are_refused_naming_the_message(mangle, why):
    app, engine = app_with()
    msg = await first_turn(app)
    calls = len(engine.calls)
    answer = {"role": "assistant", "content": msg["content"], "thought_signature": mangle(msg["thought_signature"])}
    assert_refused(await chat(app, [QUESTION, answer, FOLLOW_UP]), 1, why)
    assert len(engine.calls) == calls  # refused before any generation


async def test_expired_foreign_and_misplaced_signatures_are_refused():
    issuer, _ = app_with(SignatureSettings(keys=KEY.keys, ttl_seconds=-1))  # issues already-expired signatures
    app, _ = app_with()
    expired = (await first_turn(issuer))["thought_signature"]
    answer = {"role": "assistant", "content": " 4", "thought_signature": expired}
    assert_refused(await chat(app, [QUESTION, answer, FOLLOW_UP]), 1, "expired")

    foreign, _ = app_with(SignatureSettings(keys=("someone-else",)))
    answer["thought_signature"] = (await first_turn(foreign))["thought_signature"]
    assert_refused(await chat(app, [QUESTION, answer, FOLLOW_UP]), 1, "does not hold")

    answer["thought_signature"] = (await first_turn(app))["thought_signature"]
    other = {"role": "user", "content": "something else entirely"}
    assert_refused(await chat(app, [other, answer, FOLLOW_UP]), 1, "another conversation")
    system = {"role": "system", "content": "be brief"}  # a message slipped in before it changes the conversation
    assert_refused(await chat(app, [system, QUESTION, answer, FOLLOW_UP]), 2, "another conversation")
    user_signed = {**FOLLOW_UP, "thought_signature": answer["thought_signature"]}
    assert_refused(await chat(app, [QUESTION, {"role": "assistant", "content": " 4"}, user_signed]), 2, "assistant")


async def test_key_rotation_accepts_old_keys_and_signs_with_the_first():
    old, _ = app_with(SignatureSettings(keys=("old-key",)))
    rotated, _ = app_with(SignatureSettings(keys=("new-key", "old-key")))
    retired, _ = app_with(SignatureSettings(keys=("new-key",)))
    issued = (await first_turn(old))["thought_signature"]
    answer = {"role": "assistant", "content": " 4", "thought_signature": issued}
    assert (await chat(rotated, [QUESTION, answer, FOLLOW_UP])).status_code == 200
    assert_refused(await chat(retired, [QUESTION, answer, FOLLOW_UP]), 1, "does not hold")
    answer["thought_signature"] = (await first_turn(rotated))["thought_signature"]  # signed with new-key
    assert (await chat(retired, [QUESTION, answer, FOLLOW_UP])).status_code == 200


async def test_size_limit_cuts_reasoning_to_fit_and_refuses_oversized_signatures():
    long_thought = " ".join(f"w{i}" for i in range(400))  # fits the fake engine's context
    keys = SignatureSettings(keys=KEY.keys, max_bytes=600)
    app, _ = app_with(keys, FakeEngine(lambda p, s, i: f"<think>{long_thought}</think> 4"))
    msg = await first_turn(app)
    assert len(msg["thought_signature"]) <= 600
    state = open_state(msg["thought_signature"], [QUESTION], keys)
    assert state.truncated and long_thought.endswith(state.reasoning)
    big = SignatureSettings(keys=KEY.keys, max_bytes=1 << 20)
    issuer, _ = app_with(big, FakeEngine(lambda p, s, i: f"<think>{long_thought}</think> 4"))
    oversized = (await first_turn(issuer))["thought_signature"]
    assert len(oversized) > 600
    answer = {"role": "assistant", "content": " 4", "thought_signature": oversized}
    assert_refused(await chat(app, [QUESTION, answer, FOLLOW_UP]), 1, "longer than")


async def test_streamed_choices_carry_the_signature_on_their_finishing_chunk():
    app, _ = app_with()
    events = sse_events((await chat(app, [QUESTION], n=2, stream=True)).text)
    for index in (0, 1):
        mine = [e["choices"][0] for e in events[:-1] if e["choices"] and e["choices"][0]["index"] == index]
        signed = [c for c in mine if "thought_signature" in c["delta"]]
        assert signed == [mine[-1]] and mine[-1]["finish_reason"] == "stop"
        state = open_state(signed[0]["delta"]["thought_signature"], [QUESTION])
        assert state.reasoning == f"turn 1 sample {index}"


async def test_no_key_means_a_random_key_and_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ponder.server"):
        first, _ = app_with(SignatureSettings())
    assert "RANDOM PER-PROCESS KEY" in caplog.text
    second, _ = app_with(SignatureSettings())
    issued = (await first_turn(first))["thought_signature"]
    answer = {"role": "assistant", "content": " 4", "thought_signature": issued}
    assert (await chat(first, [QUESTION, answer, FOLLOW_UP])).status_code == 200
    assert_refused(await chat(second, [QUESTION, answer, FOLLOW_UP]), 1, "does not hold")


async def test_a_searched_answer_signs_its_strategy_spend_and_top_candidates():
    from ponder.testing import TableVerifier
    from ponder.verifiers.registry import VerifierSet

    engine = FakeEngine(lambda p, s, i: f"<think>try {i}</think>{i % 3}")
    verifiers = VerifierSet([TableVerifier({"0": 0.2, "1": 0.9, "2": 0.5}, name="table")])
    app, _ = fake_app(engine, ServerSettings(signatures=KEY), verifiers)
    body = {"strategy": "best_of_n", "verifier": "table", "budget": {"max_samples": 6}}
    for stream in (False, True):
        resp = await chat(app, [QUESTION], stream=stream, **body)
        if stream:
            last = [e for e in sse_events(resp.text) if isinstance(e, dict) and e["choices"]][-1]
            signature = last["choices"][0]["delta"]["thought_signature"]
        else:
            signature = resp.json()["choices"][0]["message"]["thought_signature"]
        state = open_state(signature, [QUESTION])
        assert state.strategy == "best_of_n" and state.spent["samples"] == 6
        assert state.reasoning in {"try 1", "try 4"}
        assert [c["answer"] for c in state.candidates][:2] == ["1", "1"] and len(state.candidates) == 4
        assert state.candidates[0]["score"] == 0.9


async def test_the_next_auto_turn_reuses_the_signed_difficulty_instead_of_probing():
    app, _ = app_with(engine=FakeEngine(lambda p, s, i: f"<think>guess {i}</think>{i % 4}"))  # no agreement
    first = (await chat(app, [QUESTION], reasoning_effort="auto", budget={"max_samples": 8})).json()
    assert first["ponder"]["probe_samples"] == 4 and first["ponder"]["difficulty"] >= 4
    msg = first["choices"][0]["message"]
    assert open_state(msg["thought_signature"], [QUESTION]).difficulty == first["ponder"]["difficulty"]
    answer = {"role": "assistant", "content": msg["content"], "thought_signature": msg["thought_signature"]}
    second = (await chat(app, [QUESTION, answer, FOLLOW_UP], reasoning_effort="auto", budget={"max_samples": 8})).json()
    assert second["ponder"]["probe_samples"] == 0 and second["ponder"]["difficulty"] == first["ponder"]["difficulty"]
    assert second["ponder"]["routed_samples"] == 8  # the probe's share went to the routed search
    # a level whose route is the probe itself still probes
    easy = {"strategy": "compute_optimal", "strategy_options": {"difficulty": 1}}
    assert (await chat(app, [QUESTION], **easy)).json()["ponder"]["probe_samples"] == 4


async def test_tool_calls_carry_the_signature_where_gemini_puts_it_and_it_is_accepted_there():
    add = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
    engine = FakeEngine(
        lambda p, s, i: '{"a": 2, "b": 3}', capabilities=EngineCapabilities(512, structured_outputs=True)
    )
    app, _ = app_with(engine=engine)
    body = {"tools": [add], "tool_choice": {"type": "function", "function": {"name": "add"}}}
    message = (await chat(app, [QUESTION], **body)).json()["choices"][0]["message"]
    [call] = message["tool_calls"]
    assert call["extra_content"] == {"google": {"thought_signature": message["thought_signature"]}}
    turn = {"role": "assistant", "content": None, "tool_calls": [call]}  # as a Gemini client sends it back
    result = {"role": "tool", "tool_call_id": call["id"], "content": "5"}
    assert (await chat(app, [QUESTION, turn, result], tools=[add], tool_choice="none")).status_code == 200
    tampered = _flip(message["thought_signature"], len(message["thought_signature"]) // 2)
    forged = {**call, "extra_content": {"google": {"thought_signature": tampered}}}
    resp = await chat(app, [QUESTION, {**turn, "tool_calls": [forged]}, result], tools=[add], tool_choice="none")
    assert_refused(resp, 1, "failed authentication")
