"""Real clients against a real `ponder serve` (vLLM CPU, tiny model): LangChain's ChatOpenAI and ChatDeepSeek, LiteLLM
with the ``openai/`` and ``hosted_vllm/`` prefixes, as their users call them (README: "LangChain and LiteLLM")."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest

pytestmark = pytest.mark.e2e
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM reads its bundled price map, not the network

QUESTION = "What is 12+7?"
THINKING = [("user", QUESTION), ("assistant", "<think>")]  # continued from <think>: the answer is all reasoning
VERDICT = {
    "title": "verdict",
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "unit": {"enum": ["cm", "kg"]}},
    "required": ["ok", "unit"],
    "additionalProperties": False,
}
CONVERT = {
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


@pytest.fixture(scope="module")
def url(ponder_server) -> str:
    return ponder_server("vllm")


def chat_openai(url: str, **kwargs):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="tiny", base_url=f"{url}/v1", api_key="unused", max_retries=0, max_tokens=8, **kwargs)


def test_chat_openai_keeps_the_ponder_block_through_response_headers(url):
    llm = chat_openai(url, include_response_headers=True, reasoning_effort="low")
    msg = llm.invoke(QUESTION)
    block = json.loads(msg.response_metadata["headers"]["x-ponder"])
    assert block["effort"] == "low" and block["spent"]["samples"] == 4
    # the three candidates not returned are reasoning tokens, which LangChain reports as such
    assert msg.usage_metadata["output_token_details"]["reasoning"] > 0
    assert msg.usage_metadata["output_tokens"] == block["spent"]["tokens"]
    searched = chat_openai(url, include_response_headers=True, extra_body={"strategy": "self_consistency"})
    block = json.loads(searched.invoke(QUESTION).response_metadata["headers"]["x-ponder"])
    assert block["strategy"] == "self_consistency" and block["spent"]["samples"] > 1


def test_chat_deepseek_keeps_reasoning_content(url):
    from langchain_deepseek import ChatDeepSeek

    llm = ChatDeepSeek(model="tiny", api_base=f"{url}/v1", api_key="unused", max_retries=0, max_tokens=8)
    msg = llm.invoke(THINKING, extra_body={"continue_final_message": True})
    assert msg.additional_kwargs["reasoning_content"] and msg.content == ""
    chunks = list(llm.stream(QUESTION, extra_body={"strategy": "self_consistency", "budget": {"max_samples": 4}}))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert "votes" in streamed.additional_kwargs["reasoning_content"]  # the search's live progress


def test_chat_openai_structured_output_and_forced_tool_call(url):
    llm = chat_openai(url, max_completion_tokens=48)
    verdict = llm.with_structured_output(VERDICT, method="json_schema").invoke(QUESTION)
    jsonschema.validate(verdict, VERDICT)
    msg = llm.bind_tools([CONVERT], tool_choice="convert").invoke(QUESTION)
    [call] = msg.tool_calls
    assert call["name"] == "convert"
    jsonschema.validate(call["args"], CONVERT["function"]["parameters"])


@pytest.mark.parametrize("prefix", ["openai", "hosted_vllm"])
def test_litellm_passes_extensions_and_keeps_reasoning_and_ponder(url, prefix):
    import litellm

    kwargs = dict(model=f"{prefix}/tiny", api_base=f"{url}/v1", api_key="unused", max_tokens=8)
    question = [{"role": "user", "content": QUESTION}]
    # Ponder's extension fields as plain keyword arguments
    resp = litellm.completion(messages=question, strategy="self_consistency", budget={"max_samples": 3}, **kwargs)
    assert resp.ponder["strategy"] == "self_consistency" and resp.ponder["spent"]["samples"] == 3
    assert resp.usage.completion_tokens == resp.ponder["spent"]["tokens"]
    thinking = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "<think>"}]
    resp = litellm.completion(messages=thinking, continue_final_message=True, **kwargs)
    assert resp.choices[0].message.reasoning_content
