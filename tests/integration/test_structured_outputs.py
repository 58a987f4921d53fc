"""response_format and tools through the app (fake engine): constraints reach every engine call, calls are read back."""

from __future__ import annotations

import json

import pytest

from ponder.core.types import EngineCapabilities, StructuredOutput
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine, RulePRM, TableVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "What is 2+3?"}]
CONSTRAINED = EngineCapabilities(max_model_len=512, structured_outputs=True)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


def app_with(responder, capabilities=CONSTRAINED, verifiers=(), **settings):
    engine = FakeEngine(responder, capabilities=capabilities)
    vset = VerifierSet(list(verifiers), default=verifiers[0].name) if verifiers else None
    return fake_app(engine, ServerSettings(**settings), vset)


async def post(app, body):
    async with client(app) as c:
        return await c.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, **body})


def assert_400(resp, param: str, contains: str = "") -> None:
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and err["code"] == 400
    assert contains.lower() in err["message"].lower(), err["message"]


async def test_json_schema_constrains_the_engine_and_streams_as_usual():
    app, engine = app_with(lambda p, s, i: '{"answer": 5}')
    data = (await post(app, {"response_format": JSON_SCHEMA})).json()
    assert json.loads(data["choices"][0]["message"]["content"]) == {"answer": 5}
    assert engine.calls[0][1].structured == StructuredOutput(json_schema=json.dumps(SCHEMA, sort_keys=True))
    async with client(app) as c:
        resp = await c.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": MESSAGES, "response_format": {"type": "json_object"}, "stream": True},
        )
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in sse_events(resp.text)[:-1] if e["choices"])
    assert json.loads(content) == {"answer": 5}
    assert engine.calls[1][1].structured == StructuredOutput(json_object=True)


async def test_text_format_is_unconstrained():
    app, engine = app_with(lambda p, s, i: "5")
    assert (await post(app, {"response_format": {"type": "text"}})).status_code == 200
    assert engine.calls[0][1].structured is None


@pytest.mark.parametrize(
    ("response_format", "contains"),
    [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}, "not a valid json schema"),
        ({"type": "json_schema"}, "needs json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"properties": 3}}}, "properties"),
        ({"type": "yaml"}, ""),
    ],
)
async def test_invalid_response_format_is_400_naming_it(response_format, contains):
    app, engine = app_with(lambda p, s, i: "5")
    resp = await post(app, {"response_format": response_format})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"].startswith("response_format") and contains in err["message"].lower()
    assert engine.calls == []


async def test_engine_without_structured_outputs_refuses_clearly():
    app, engine = app_with(lambda p, s, i: "5", capabilities=EngineCapabilities(max_model_len=512))
    assert_400(await post(app, {"response_format": JSON_SCHEMA}), "response_format", "constrained decoding")
    forced = {"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "add"}}}
    assert_400(await post(app, forced), "tool_choice", "constrained decoding")
    assert engine.calls == []


async def test_every_candidate_is_constrained_under_strategies():
    for strategy in ("best_of_n", "self_consistency", "compute_optimal"):
        body = {"response_format": JSON_SCHEMA, "strategy": strategy, "budget": {"max_samples": 4}}
        app, engine = app_with(
            lambda p, s, i: f'{{"answer": {5 if i % 2 else i}}}', verifiers=[TableVerifier({}, default=0.5)]
        )
        resp = await post(app, body)
        assert resp.status_code == 200, (strategy, resp.text)
        assert json.loads(resp.json()["choices"][0]["message"]["content"])["answer"] in (0, 2, 5)
        assert engine.calls and all(call[1].structured is not None for call in engine.calls), strategy


@pytest.mark.parametrize("strategy", ["beam_search", "mcts", "tree_of_thoughts", "self_refine", "dvts"])
async def test_strategies_that_continue_partial_answers_refuse_a_constraint(strategy):
    app, engine = app_with(lambda p, s, i: "5", verifiers=[RulePRM()])
    assert_400(await post(app, {"response_format": JSON_SCHEMA, "strategy": strategy}), "response_format", strategy)
    assert engine.calls == []


async def test_forced_named_call_is_a_tool_call_with_the_generated_arguments():
    app, engine = app_with(lambda p, s, i: '{"a": 2, "b": 3}')
    body = {"tools": [ADD, WEATHER], "tool_choice": {"type": "function", "function": {"name": "add"}}}
    data = (await post(app, body)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"  # a forced call finishes as OpenAI's does
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    prompt, params, _n = engine.calls[0]
    assert json.loads(params.structured.json_schema) == ADD["function"]["parameters"]
    assert [t["function"]["name"] for t in prompt.tools] == ["add", "weather"]  # the template sees the tools


async def test_required_calls_under_best_of_n_are_ranked_like_any_answer():
    def calls(p, s, i):
        return json.dumps([{"name": "add", "parameters": {"a": i, "b": 3}}])

    by_first_argument = TableVerifier({}, key=lambda text: json.loads(text)[0]["parameters"]["a"], default=0.0)
    by_first_argument.table = {2: 0.9, 0: 0.1, 1: 0.2, 3: 0.3}
    app, engine = app_with(calls, verifiers=[by_first_argument])
    body = {"tools": [ADD], "tool_choice": "required", "strategy": "best_of_n", "budget": {"max_samples": 4}}
    data = (await post(app, body)).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [json.loads(c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [{"a": 2, "b": 3}]
    assert data["ponder"]["strategy"] == "best_of_n" and data["ponder"]["scores"] == [0.9]
    schema = json.loads(engine.calls[0][1].structured.json_schema)
    assert schema["type"] == "array" and schema["items"]["properties"]["name"]["enum"] == ["add"]


async def test_tool_calls_stream_whole_in_one_delta():
    app, _ = app_with(lambda p, s, i: '{"a": 1, "b": 1}')
    async with client(app) as c:
        resp = await c.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": MESSAGES,
                "tools": [ADD],
                "tool_choice": {"type": "function", "function": {"name": "add"}},
                "stream": True,
            },
        )
    events = [e for e in sse_events(resp.text) if e != "[DONE]" and e["choices"]]
    deltas = [e["choices"][0]["delta"] for e in events]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    signed = calls[0][0].pop("extra_content")  # the thought signature, where Gemini puts it (test_signatures.py)
    assert signed == {"google": {"thought_signature": deltas[-1]["thought_signature"]}}
    assert calls == [[{"index": 0, "id": calls[0][0]["id"], "type": "function",
                       "function": {"name": "add", "arguments": '{"a": 1, "b": 1}'}}]]  # fmt: skip
    assert not any(d.get("content") for d in deltas)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_auto_without_a_parser_and_bad_choices_are_400():
    app, engine = app_with(lambda p, s, i: "5")
    assert_400(await post(app, {"tools": [ADD]}), "tool_choice", "--tool-call-parser")
    resp = await post(app, {"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "mul"}}})
    assert resp.status_code == 400 and "mul" in resp.json()["error"]["message"]
    resp = await post(app, {"tool_choice": "required"})
    assert resp.status_code == 400 and "needs tools" in resp.json()["error"]["message"]
    resp = await post(app, {"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": 1}}}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"].startswith("tools")
    both = {"tools": [ADD], "tool_choice": "required", "response_format": JSON_SCHEMA}
    assert_400(await post(app, both), "response_format", "tools")
    assert engine.calls == []


async def test_tool_choice_none_shows_the_tools_and_reads_no_calls():
    app, engine = app_with(lambda p, s, i: '<tool_call>{"name": "add", "arguments": {}}</tool_call>')
    data = (await post(app, {"tools": [ADD], "tool_choice": "none"})).json()
    assert "tool_calls" not in data["choices"][0]["message"]
    assert data["choices"][0]["message"]["content"].startswith("<tool_call>")
    assert engine.calls[0][0].tools is not None and engine.calls[0][1].structured is None


async def test_tool_turns_reach_the_chat_template():
    app, engine = app_with(lambda p, s, i: "5")
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]  # fmt: skip
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "tools": [ADD],
                                                           "tool_choice": "none"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    sent = engine.calls[0][0].messages
    assert sent[1]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    ]
    assert sent[2]["role"] == "tool" and sent[2]["tool_call_id"] == "call_1" and sent[2]["content"] == "5"


async def test_auto_reads_calls_with_the_models_parser_under_a_strategy():
    pytest.importorskip("vllm")
    from ponder.training.tokenizer import build_tokenizer

    def answers(p, s, i):
        if i % 2:
            return "The answer is 5."
        return f'<tool_call>{{"name": "add", "arguments": {{"a": {i}, "b": 3}}}}</tool_call>'

    engine = FakeEngine(answers, capabilities=CONSTRAINED)
    engine.tokenizer = build_tokenizer()
    verifier = TableVerifier({}, key=lambda t: "call" if "<tool_call>" in t else "text", default=0.0)
    verifier.table = {"call": 0.8, "text": 0.3}
    app, _ = fake_app(engine, ServerSettings(tool_call_parser="hermes"), VerifierSet([verifier], default="table"))
    data = (await post(app, {"tools": [ADD], "strategy": "best_of_n", "budget": {"max_samples": 4}})).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "add"
    assert engine.calls[0][1].structured is None  # auto: the model chooses, nothing is forced
    data = (await post(app, {"tools": [ADD], "n": 2})).json()  # strategy none: index 1 answers in text
    assert data["choices"][1]["message"] == {**data["choices"][1]["message"], "content": "The answer is 5."}
    assert "tool_calls" not in data["choices"][1]["message"] and data["choices"][1]["finish_reason"] == "stop"
    assert data["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a": 0, "b": 3}'
