"""``POST /v1/responses`` over the fake engine: items, usage, streaming events, encrypted reasoning, refusals."""

from __future__ import annotations

import json

import pytest

from ponder.server.settings import ServerSettings, SignatureSettings
from ponder.server.signatures import SignatureCodec, Turn, conversation_hash
from ponder.testing import FakeEngine, TableVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app

MODEL = "fake-model"
KEY = SignatureSettings(keys=("responses-key",))


def engine() -> FakeEngine:
    return FakeEngine(lambda p, s, i: f"<think>seen {len(p.messages)} {i}</think> answer {i % 2}")


def app_with(verifiers=None, **settings):
    fake = engine()
    app, _ = fake_app(fake, ServerSettings(signatures=KEY, **settings), verifiers)
    return app, fake


async def respond(app, **body):
    async with client(app) as c:
        return await c.post("/v1/responses", json={"model": MODEL, **body})


def stream_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE block, checking that the name matches the data's type."""
    events = []
    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


async def test_a_string_input_gets_reasoning_and_message_items_with_usage():
    app, fake = app_with()
    resp = await respond(app, input="two plus two?", instructions="be brief", max_output_tokens=50)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["object"] == "response" and data["status"] == "completed" and data["id"].startswith("resp_")
    reasoning, message = data["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [{"type": "reasoning_text", "text": "seen 2 0"}]
    assert reasoning["encrypted_content"] is None  # not asked for
    assert message["type"] == "message" and message["content"][0]["text"] == " answer 0"
    assert data["usage"]["output_tokens"] == 5 and data["usage"]["total_tokens"] > 5
    assert data["ponder"]["strategy"] == "none" and data["store"] is False
    prompt, params, _ = fake.calls[0]
    assert prompt.messages == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "two plus two?"})
    assert params.max_tokens == 50


async def test_encrypted_reasoning_round_trips_and_restores_the_reasoning():
    app, fake = app_with()
    include = ["reasoning.encrypted_content"]
    question = {"role": "user", "content": "two plus two?"}
    first = (await respond(app, input=[question], include=include, store=False)).json()
    reasoning = first["output"][0]
    codec = SignatureCodec(KEY)
    state = codec.open(reasoning["encrypted_content"], conversation_hash([Turn("user", "two plus two?")]), "t")
    assert state.reasoning == "seen 1 0"
    # the output items go back as input, as the SDK's users do
    second = await respond(app, input=[question, *first["output"], {"role": "user", "content": "and again?"}])
    assert second.status_code == 200, second.text
    assert fake.calls[-1][0].messages[1] == {"role": "assistant", "content": "<think>seen 1 0</think> answer 0"}
    # a signature issued by chat completions works here too: the same conversation, the same state
    tampered = {**reasoning, "encrypted_content": reasoning["encrypted_content"][:-6] + "AAAAAA"}
    bad = await respond(app, input=[question, tampered, first["output"][1], {"role": "user", "content": "again?"}])
    assert bad.status_code == 400
    err = bad.json()["error"]
    assert err["code"] == "invalid_thought_signature" and err["param"] == "input[1].encrypted_content"


async def test_summary_and_extension_fields():
    verifiers = VerifierSet([TableVerifier({" answer 0": 0.1, " answer 1": 0.9}, name="table")])
    app, _ = app_with(verifiers)
    body = {"reasoning": {"effort": "low", "summary": "auto"}, "verifier": "table", "strategy": "best_of_n"}
    data = (await respond(app, input="q", **body)).json()
    assert data["ponder"]["strategy"] == "best_of_n" and data["ponder"]["spent"]["samples"] == 4
    assert data["output"][0]["summary"][0]["type"] == "summary_text" and data["output"][0]["content"] is None
    assert data["output"][1]["content"][0]["text"] == " answer 1"
    assert data["reasoning"] == {"effort": "low", "summary": "auto"}


async def test_length_cut_is_incomplete():
    app, _ = app_with()
    data = (await respond(app, input="q", max_output_tokens=2)).json()
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_streamed_events_follow_the_spec():
    app, _ = app_with()
    resp = await respond(app, input="q", stream=True, include=["reasoning.encrypted_content"])
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = stream_events(resp.text)
    names = [name for name, _ in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-1] == "response.completed" and "[DONE]" not in resp.text
    reasoning = "".join(d["delta"] for n, d in events if n == "response.reasoning_text.delta")
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert (reasoning, text) == ("seen 1 0", " answer 0")
    done = [d["item"] for n, d in events if n == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "message"]
    assert done[0]["encrypted_content"]  # final on the item's done event
    final = events[-1][1]["response"]
    assert final["output"] == done and final["usage"]["output_tokens"] == 5 and final["ponder"]["strategy"] == "none"
    for name in ("response.output_text.done", "response.content_part.done", "response.reasoning_text.done"):
        assert name in names
    assert names.index("response.reasoning_text.done") < names.index("response.output_text.delta")


async def test_streamed_search_sends_summary_deltas():
    verifiers = VerifierSet([TableVerifier({" answer 0": 0.1, " answer 1": 0.9}, name="table")])
    app, _ = app_with(verifiers)
    body = {
        "reasoning": {"summary": "auto"},
        "strategy": "best_of_n",
        "verifier": "table",
        "budget": {"max_samples": 2},
    }
    events = stream_events((await respond(app, input="q", stream=True, **body)).text)
    names = [name for name, _ in events]
    for name in ("response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                 "response.reasoning_summary_text.done", "response.reasoning_summary_part.done"):  # fmt: skip
        assert name in names
    assert events[-1][1]["response"]["output"][1]["content"][0]["text"] == " answer 1"


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"store": True}, "store", "keeps no responses"),
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
        ({"include": ["file_search_call.results"]}, "include", "not supported"),
        ({"tools": [{"type": "web_search"}]}, "tools", "not supported"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input", "function_call"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input", "image"),
        ({"reasoning": {"effort": "high"}, "reasoning_effort": "low"}, None, "disagree"),
        ({"strategy": "nope"}, "strategy", "Valid values"),
        ({"max_output_tokens": 100000}, "max_output_tokens", "max_output_tokens"),
        ({"n": 2}, None, "one answer"),
    ],
)
async def test_refusals_are_openai_shaped_400s(body, param, says):
    app, fake = app_with()
    resp = await respond(app, **{"input": "q", **body})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert says in err["message"] and err["code"] == 400
    if param is not None:
        assert err["param"] == param
    assert fake.calls == []


def _odd_values(rng):
    return [
        None, True, -1, 0, 2**70, -(2**70), 1.5, float("nan"), "", "x", "\ud800", "resp_1", [], {}, [1, "a"],
        {"type": "input_text", "text": 3}, [{"type": "reasoning"}], [{"role": "user"}],
        [{"role": "user", "content": [{"type": "output_text"}]}],
        [{"type": "reasoning", "encrypted_content": "A" * 50}],
        [{"type": "message", "role": "tool", "content": "x"}], {"effort": "max"}, {"summary": 1}, {"format": {}},
        rng.choice(["text", "reasoning.encrypted_content"]),
    ]  # fmt: skip


async def test_fuzzed_bodies_are_answered_never_a_server_error():
    """Every field of a valid body, one at a time, replaced by odd values of the wrong type or range."""
    import random

    app, _ = app_with()
    rng = random.Random(7)
    base = {"input": "q", "max_output_tokens": 8}
    fields = [
        "input", "instructions", "reasoning", "max_output_tokens", "include", "store", "previous_response_id",
        "tools", "text", "metadata", "stream", "stream_options", "temperature", "top_p", "strategy", "budget",
        "thinking_budget", "seed", "n", "model", "user", "include_reasoning",
    ]  # fmt: skip
    async with client(app) as c:
        for name in fields:
            for value in _odd_values(rng):
                body = {"model": MODEL, **base, name: value}
                resp = await c.post(
                    "/v1/responses", content=json.dumps(body), headers={"content-type": "application/json"}
                )
                assert resp.status_code in (200, 400, 404), (name, value, resp.status_code, resp.text[:300])
                if resp.status_code != 200:
                    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


class FailingVerifier:
    """A verifier that refuses mid-search, after the stream has started."""

    name = "failing"
    step_level = False

    async def score(self, problem, answers, reference=None):
        from ponder.core.errors import InvalidRequestError

        raise InvalidRequestError("the verifier refused these answers", param="verifier")


async def test_an_error_mid_stream_is_an_error_event_then_response_failed():
    app, _ = app_with(VerifierSet([FailingVerifier()]))
    body = {"strategy": "best_of_n", "verifier": "failing", "budget": {"max_samples": 2}}
    resp = await respond(app, input="q", stream=True, **body)
    assert resp.status_code == 200
    events = stream_events(resp.text)
    assert [name for name, _ in events][-2:] == ["error", "response.failed"]
    error = events[-2][1]
    assert error["code"] == "400" and error["param"] == "verifier" and "refused" in error["message"]
    assert events[-1][1]["response"]["status"] == "failed" and events[-1][1]["response"]["error"]["code"] == "400"


async def test_langchain_chat_openai_on_the_responses_api_keeps_the_reasoning_across_turns():
    """LangChain's ChatOpenAI(use_responses_api=True): it sends the reasoning items back, with their signature."""
    import httpx
    from langchain_openai import ChatOpenAI

    app, fake = app_with()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ponder") as http:
        llm = ChatOpenAI(
            model=MODEL,
            base_url="http://ponder/v1",
            api_key="unused",
            http_async_client=http,
            use_responses_api=True,
            reasoning={"effort": "minimal", "summary": "auto"},
            include=["reasoning.encrypted_content"],
            store=False,
        )
        first = await llm.ainvoke("two plus two?")
        reasoning = next(block for block in first.content if block["type"] == "reasoning")
        assert reasoning["summary"][0]["text"] == "seen 1 0" and reasoning["encrypted_content"]
        await llm.ainvoke([("user", "two plus two?"), first, ("user", "and again?")])
        assert fake.calls[-1][0].messages[1] == {"role": "assistant", "content": "<think>seen 1 0</think> answer 0"}
        chunks = [chunk async for chunk in llm.astream("two plus two?")]
        text = "".join(b.get("text", "") for c in chunks for b in c.content if isinstance(b, dict))
        assert text == " answer 0"


async def test_the_sdks_stream_helper_accumulates_our_events():
    """``client.responses.stream`` rebuilds the response from the events: their order and item indices hold up."""
    import httpx
    import openai

    app, _ = app_with()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ponder") as http:
        sdk = openai.AsyncOpenAI(base_url="http://ponder/v1", api_key="unused", http_client=http, max_retries=0)
        for reasoning in ({"summary": "auto"}, None):
            extra = {"reasoning": reasoning} if reasoning else {}
            async with sdk.responses.stream(
                model=MODEL, input="q", include=["reasoning.encrypted_content"], **extra
            ) as s:
                final = await s.get_final_response()
            assert final.output_text == " answer 0" and [o.type for o in final.output] == ["reasoning", "message"]
            texts = final.output[0].summary if reasoning else final.output[0].content
            assert texts[0].text == "seen 1 0" and final.output[0].encrypted_content
