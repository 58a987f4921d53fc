"""response_format and tools on real engines: vLLM's structured outputs constrain a random tiny model, also under a
strategy; the transformers engine constrains with xgrammar; an upstream vLLM constrains what Ponder forwards."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "Is 12+7 19?"}]
# Short, closed values: the random model can only finish them (no free-running strings or numbers).
SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "unit": {"enum": ["cm", "kg"]}},
    "required": ["ok", "unit"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
TOOL = {
    "type": "function",
    "function": {
        "name": "convert",
        "description": "Convert a length.",
        "parameters": {
            "type": "object",
            "properties": {"to": {"enum": ["cm", "m"]}, "exact": {"type": "boolean"}},
            "required": ["to", "exact"],
            "additionalProperties": False,
        },
    },
}


def client_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def vllm(ponder_server) -> openai.OpenAI:
    return client_for(ponder_server("vllm"))


def test_json_schema_is_enforced(vllm):
    resp = vllm.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=48, temperature=1.0, seed=3, response_format=FORMAT
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop", choice
    jsonschema.validate(json.loads(choice.message.content), SCHEMA)


def test_json_object_streams_json(vllm):
    stream = vllm.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=48,
        temperature=0,
        response_format={"type": "json_object"},
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.lstrip().startswith("{")  # constrained from the first token (unconstrained, it writes letters)


def test_every_candidate_of_a_search_is_constrained(vllm):
    resp = vllm.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=48,
        temperature=1.0,
        response_format=FORMAT,
        extra_body={"strategy": "self_consistency", "budget": {"max_samples": 3}, "return_trace": True},
    )
    candidates = resp.model_extra["ponder"]["trace"]["candidates"]
    assert len(candidates) == 3
    for cand in candidates:
        assert cand["finish_reason"] == "stop"
        jsonschema.validate(json.loads(cand["text"]), SCHEMA)
    jsonschema.validate(json.loads(resp.choices[0].message.content), SCHEMA)


def test_forced_tool_call_on_a_model_that_cannot_call_tools(vllm):
    resp = vllm.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=48,
        temperature=1.0,
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "convert"}},
    )
    [call] = resp.choices[0].message.tool_calls
    assert call.function.name == "convert" and call.id
    jsonschema.validate(json.loads(call.function.arguments), TOOL["function"]["parameters"])


def test_required_tool_call_under_best_of_n_and_auto_reads_the_models_syntax(vllm):
    resp = vllm.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=96,
        temperature=1.0,
        tools=[TOOL],
        tool_choice="required",
        parallel_tool_calls=False,  # one call: the random model could otherwise add calls until max_tokens
        extra_body={"strategy": "best_of_n", "verifier": "math_rule", "budget": {"max_samples": 2}},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert resp.model_extra["ponder"]["strategy"] == "best_of_n"
    [call] = choice.message.tool_calls
    jsonschema.validate(json.loads(call.function.arguments), TOOL["function"]["parameters"])
    # auto: the server runs with --tool-call-parser hermes; the random model writes no <tool_call>, so text comes back
    resp = vllm.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0, tools=[TOOL])
    assert resp.choices[0].message.tool_calls is None and resp.choices[0].message.content is not None


def test_invalid_schema_is_a_400_naming_response_format(vllm):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": "ok"}}}
    with pytest.raises(openai.BadRequestError) as info:
        vllm.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, response_format=bad)
    assert info.value.body["param"] == "response_format"


def test_transformers_engine_constrains_with_xgrammar(ponder_server):
    hf = client_for(ponder_server("hf"))
    resp = hf.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=48, temperature=1.0, seed=3, response_format=FORMAT
    )
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content), SCHEMA)


def test_upstream_vllm_constrains_what_ponder_forwards(ponder_server):
    upstream = client_for(ponder_server("openai"))
    resp = upstream.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=48, temperature=1.0, seed=5, response_format=FORMAT
    )
    assert resp.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(resp.choices[0].message.content), SCHEMA)


def test_forced_tool_call_through_an_upstream_vllm(ponder_server):
    upstream = client_for(ponder_server("openai"))
    resp = upstream.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=48,
        temperature=1.0,
        seed=5,
        tools=[TOOL],  # shown by the upstream's template (tool_choice none there); the call is read here
        tool_choice={"type": "function", "function": {"name": "convert"}},
    )
    [call] = resp.choices[0].message.tool_calls
    assert call.function.name == "convert"
    jsonschema.validate(json.loads(call.function.arguments), TOOL["function"]["parameters"])
