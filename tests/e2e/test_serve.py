"""`ponder serve` as a real process on each engine, driven by the official openai SDK."""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e
ENGINES = ["vllm", "hf", "openai"]
MESSAGES = [{"role": "user", "content": "What is 12+7?"}]


@pytest.fixture(params=ENGINES, scope="module")
def url(request, ponder_server) -> str:
    return ponder_server(request.param)


@pytest.fixture
def client(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_models_lists_the_served_name(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_plain_chat(client):
    resp = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    choice = resp.choices[0]
    assert choice.finish_reason in ("stop", "length")
    text = (choice.message.content or "") + (getattr(choice.message, "reasoning_content", None) or "")
    assert text
    assert 0 < resp.usage.completion_tokens <= 8
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"] or finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 10
    streamed = "".join(
        (c.choices[0].delta.content or "") + (getattr(c.choices[0].delta, "reasoning_content", None) or "")
        for c in chunks
        if c.choices
    )
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, temperature=0)
    message = whole.choices[0].message
    assert streamed == (getattr(message, "reasoning_content", None) or "") + (message.content or "")


def test_n3_with_seed_is_reproducible(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=6, temperature=1.0, n=3, seed=11)
    first = client.chat.completions.create(**kwargs)
    second = client.chat.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    assert first.usage.completion_tokens <= 18


def test_logprobs(client):
    resp = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 2
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob


def test_stop_cuts_the_text(client):
    kwargs = dict(model="tiny", prompt="12+7=", max_tokens=12, temperature=1.0, seed=3)
    text = client.completions.create(**kwargs).choices[0].text
    stop = text[4]
    cut = client.completions.create(**kwargs, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_extension_fields_via_extra_body(client):
    resp = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=4,
        reasoning_effort="minimal",  # "low" would contradict strategy "none": a 400 (docs/reasoning-state.md)
        extra_body={"strategy": "none", "budget": {"max_tokens": 100}},
    )
    assert resp.model_extra["ponder"]["strategy"] == "none"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, extra_body={"strategy": "magic"})
    assert info.value.body["param"] == "strategy" and "beam_search" in info.value.message
    # no max_tokens: each step fits the room the prompt leaves (upstream mode must not ask for the whole budget)
    budget = {"max_samples": 2, "max_seconds": 60}
    search = client.chat.completions.create(
        model="tiny", messages=MESSAGES, extra_body={"strategy": "beam_search", "budget": budget}
    )
    assert search.model_extra["ponder"]["strategy"] == "beam_search" and search.choices[0].finish_reason


def test_errors(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=5)
    assert bad.value.status_code == 400 and bad.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "9" * 2000}])
    assert "context length" in long.value.message


def _cancelled(url: str) -> float:
    name = 'ponder_requests_cancelled_total{route="/v1/chat/completions"}'
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_disconnect_leaves_nothing_running(client, url):
    before = _cancelled(url)
    # The tiny model writes 400 tokens faster than a loaded machine may let the client react, so a plain stream can
    # end on its own first: a 64-sample vote keeps the server busy for seconds, with many engine requests to abort.
    search = {"strategy": "self_consistency", "budget": {"max_samples": 64}, "strategy_options": {"round_size": 4}}
    for seed in (1, 2, 3):
        body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 400, "stream": True, "temperature": 1.0, **search}
        with (
            httpx.Client(base_url=url, timeout=60) as http,
            http.stream("POST", "/v1/chat/completions", json={**body, "seed": seed}) as resp,
        ):
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            assert next(lines) == ""
            assert next(lines).startswith("data: ")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if metric(url, "ponder_requests_in_flight") == 0 and metric(url, "ponder_engine_requests_running") == 0:
                break
            time.sleep(0.1)
        assert metric(url, "ponder_requests_in_flight") == 0
        assert metric(url, "ponder_engine_requests_running") == 0
        if _cancelled(url) > before:
            break
    assert _cancelled(url) > before
