"""The HTTP surface over the fake engine: OpenAI semantics, extensions, errors, limits, metrics."""

from __future__ import annotations

import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import Limits, ServerSettings
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"


def chat_body(**extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": "two plus two"}], **extra}


async def post(app, path, body, **kwargs):
    async with client(app) as c:
        return await c.post(path, json=body, **kwargs)


def assert_error(resp, status: int, param: str | None = None, contains: str = ""):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == status
    if param is not None:
        assert err["param"] == param
    assert contains.lower() in err["message"].lower()
    return err


async def test_chat_splits_reasoning_and_counts_usage():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "<think>2 + 2 = 4</think> 4"))
    resp = await post(app, "/v1/chat/completions", chat_body())
    assert resp.status_code == 200
    data = resp.json()
    msg = data["choices"][0]["message"]
    signature = msg.pop("thought_signature")  # tests/integration/test_signatures.py checks what it holds
    assert msg.pop("extra_content") == {"google": {"thought_signature": signature}}
    assert msg == {"role": "assistant", "content": " 4", "reasoning_content": "2 + 2 = 4"}
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["completion_tokens"] == 6  # the fake counts words: "<think>2", " +", " 2", " =", " 4</think>", " 4"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert data["ponder"]["strategy"] == "none"
    assert data["ponder"]["spent"]["samples"] == 1


async def test_include_reasoning_false_hides_it():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "<think>hidden</think>shown"))
    data = (await post(app, "/v1/chat/completions", chat_body(include_reasoning=False))).json()
    assert data["choices"][0]["message"]["reasoning_content"] is None
    assert data["choices"][0]["message"]["content"] == "shown"


async def test_n_returns_n_choices_and_sums_tokens():
    app, engine = fake_app(FakeEngine(lambda p, s, i: "a b c"[: 1 + 2 * i]))
    data = (await post(app, "/v1/chat/completions", chat_body(n=3))).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in data["choices"]] == ["a", "a b", "a b c"]
    assert data["usage"]["completion_tokens"] == 1 + 2 + 3
    assert len(engine.calls) == 1 and engine.calls[0][2] == 3  # one engine call for n samples


async def test_sampling_params_reach_the_engine():
    app, engine = fake_app()
    body = chat_body(temperature=0.3, top_p=0.9, stop=["x", "y"], seed=7, max_completion_tokens=5, max_tokens=9)
    body.update(presence_penalty=0.5, frequency_penalty=-0.5, logprobs=True, top_logprobs=2)
    assert (await post(app, "/v1/chat/completions", body)).status_code == 200
    params = engine.calls[0][1]
    assert (params.temperature, params.top_p, params.stop, params.seed) == (0.3, 0.9, ("x", "y"), 7)
    assert params.max_tokens == 5  # max_completion_tokens wins over the deprecated max_tokens
    assert (params.presence_penalty, params.frequency_penalty, params.logprobs) == (0.5, -0.5, 2)


async def test_logprobs_shape():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "one two"))
    data = (await post(app, "/v1/chat/completions", chat_body(logprobs=True, top_logprobs=2))).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["one", " two"]
    assert all(len(t["top_logprobs"]) == 2 and t["bytes"] == list(t["token"].encode()) for t in content)


async def test_stop_and_length_finish_reasons():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "alpha beta gamma delta"))
    stopped = (await post(app, "/v1/chat/completions", chat_body(stop=" gamma"))).json()["choices"][0]
    assert stopped["message"]["content"] == "alpha beta" and stopped["finish_reason"] == "stop"
    assert stopped["stop_reason"] == " gamma"
    cut = (await post(app, "/v1/chat/completions", chat_body(max_tokens=2))).json()["choices"][0]
    assert cut["message"]["content"] == "alpha beta" and cut["finish_reason"] == "length"


async def test_streaming_chat_is_spec_shaped():
    app, _ = fake_app(FakeEngine(lambda p, s, i: f"<think>r{i}</think> a{i} b{i}"))
    body = chat_body(n=2, stream=True, stream_options={"include_usage": True})
    resp = await post(app, "/v1/chat/completions", body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    # role chunk first for each choice
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 2 * 3
    assert all(c["usage"] is None for c in chunks[:-1])
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        content = "".join(ch["delta"].get("content") or "" for ch in mine)
        reasoning = "".join(ch["delta"].get("reasoning_content") or "" for ch in mine)
        assert (reasoning, content) == (f"r{index}", f" a{index} b{index}")
        finishes = [ch["finish_reason"] for ch in mine if ch["finish_reason"]]
        assert finishes == ["stop"] and mine[-1]["finish_reason"] == "stop"


async def test_stream_without_usage_option_has_no_usage_field():
    app, _ = fake_app()
    events = sse_events((await post(app, "/v1/chat/completions", chat_body(stream=True))).text)
    assert all("usage" not in e for e in events[:-1])


def assert_running_usage(chunks: list[dict]) -> dict:
    """Every chunk carries the usage so far (never decreasing, totals adding up); returns the last one."""
    usages = [c["usage"] for c in chunks]
    assert all(u is not None for u in usages)
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in usages)
    assert len({u["prompt_tokens"] for u in usages}) == 1  # the prompts are read before the first chunk
    completions = [u["completion_tokens"] for u in usages]
    assert completions == sorted(completions) and completions[0] == 0
    return usages[-1]


async def test_continuous_usage_stats_puts_usage_so_far_on_every_chat_chunk():
    app, _ = fake_app(FakeEngine(lambda p, s, i: f"<think>r{i}</think> a{i} b{i}"))
    options = {"include_usage": True, "continuous_usage_stats": True}
    events = sse_events(
        (await post(app, "/v1/chat/completions", chat_body(n=2, stream=True, stream_options=options))).text
    )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    last = assert_running_usage(chunks)
    assert chunks[-1]["choices"] == [] and "ponder" in chunks[-1]
    assert last["completion_tokens"] == 2 * 3 and last["prompt_tokens"] == 5  # "user: two plus two "
    # the chunk that finished the last choice already counted every token
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] == last


async def test_continuous_usage_stats_on_completions_counts_every_prompt():
    app, _ = fake_app(FakeEngine(lambda p, s, i: " x y"))
    body = {
        "model": MODEL,
        "prompt": ["a b", "c"],
        "n": 2,
        "echo": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    events = sse_events((await post(app, "/v1/completions", body)).text)
    assert events[-1] == "[DONE]"
    last = assert_running_usage(events[:-1])
    assert last == events[-2]["usage"] and last["prompt_tokens"] == 3 and last["completion_tokens"] == 4 * 2


async def test_continuous_usage_stats_needs_include_usage_as_in_vllm():
    app, _ = fake_app()
    body = chat_body(stream=True, stream_options={"continuous_usage_stats": True})
    events = sse_events((await post(app, "/v1/chat/completions", body)).text)
    assert all("usage" not in e for e in events[:-1])


async def test_continuous_usage_stats_is_refused_for_a_search():
    app, _ = fake_app()
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = chat_body(stream=True, stream_options=options, strategy="self_consistency")
    assert_error(await post(app, "/v1/chat/completions", body), 400, "stream_options", "continuous_usage_stats")
    body = {"model": MODEL, "prompt": "a", "stream": True, "stream_options": options, "strategy": "self_consistency"}
    assert_error(await post(app, "/v1/completions", body), 400, "stream_options", "continuous_usage_stats")


async def test_completions_batch_prompts_n_and_echo():
    app, engine = fake_app(FakeEngine(lambda p, s, i: f" out{i}"))
    data = (await post(app, "/v1/completions", {"model": MODEL, "prompt": ["p0", "p1"], "n": 2, "echo": True})).json()
    assert data["object"] == "text_completion"
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in data["choices"]] == ["p0 out0", "p0 out1", "p1 out0", "p1 out1"]
    assert engine.calls[0][1].max_tokens == 16  # OpenAI's completions default


async def test_completions_stream_and_logprobs():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "x y"))
    body = {
        "model": MODEL,
        "prompt": ["a", "b"],
        "stream": True,
        "logprobs": 1,
        "stream_options": {"include_usage": True},
    }
    events = sse_events((await post(app, "/v1/completions", body)).text)
    assert events[-1] == "[DONE]"
    texts = {0: "", 1: ""}
    for e in events[:-2]:
        for ch in e["choices"]:
            texts[ch["index"]] += ch["text"]
            if ch["text"]:
                assert ch["logprobs"]["tokens"] == [ch["text"]]
    assert texts == {0: "x y", 1: "x y"}
    assert events[-2]["usage"]["completion_tokens"] == 4


async def test_continue_final_message_uses_prefix():
    app, engine = fake_app(FakeEngine(lambda p, s, i: "more</think> 5"))
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>so far"}],
        "continue_final_message": True,
    }
    data = (await post(app, "/v1/chat/completions", body)).json()
    assert engine.calls[0][0].prefix == "<think>so far"
    signed = ("thought_signature", "extra_content")
    message = {k: v for k, v in data["choices"][0]["message"].items() if k not in signed}
    assert message == {"role": "assistant", "content": " 5", "reasoning_content": "more"}


async def test_models_health_version_metrics():
    app, _ = fake_app()
    async with client(app) as c:
        models = (await c.get("/v1/models")).json()
        assert models["object"] == "list" and models["data"][0]["id"] == MODEL
        assert models["data"][0]["max_model_len"] == 512
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/version")).json()["engine"] == "fake"
        await c.post("/v1/chat/completions", json=chat_body())
        await c.post("/v1/chat/completions", json=chat_body(strategy="nope"))
        text = (await c.get("/metrics")).text
    assert 'ponder_requests_total{route="/v1/chat/completions",status="200",strategy="none"} 1.0' in text
    assert 'status="400"' not in text or "ponder_requests_total" in text
    assert 'ponder_engine_calls_total{method="generate"} 1.0' in text
    assert "ponder_request_latency_seconds_bucket" in text
    assert "ponder_requests_in_flight 0.0" in text
    assert 'ponder_completion_tokens_total{strategy="none"}' in text


async def test_search_samples_are_a_histogram_per_strategy_streamed_or_not():
    app, _ = fake_app(FakeEngine(lambda p, s, i: "<think>2 + 2 = 4</think> 4"))
    vote = {"strategy": "self_consistency", "strategy_options": {"stop_agreement": None, "round_size": 2}}
    async with client(app) as c:
        await c.post("/v1/chat/completions", json=chat_body(**vote, budget={"max_samples": 8}))
        async with c.stream(
            "POST", "/v1/chat/completions", json=chat_body(**vote, budget={"max_samples": 3}, stream=True)
        ) as r:
            assert r.status_code == 200 and [e async for e in r.aiter_lines()]
        text = (await c.get("/metrics")).text
    # unanimous votes stop once the leader cannot be caught: 6 of 8 samples (rounds of 2), and 2 of 3 streamed
    lines = [line for line in text.splitlines() if line.startswith("ponder_search_samples")]
    assert 'ponder_search_samples_bucket{le="2.0",strategy="self_consistency"} 1.0' in lines
    assert 'ponder_search_samples_bucket{le="4.0",strategy="self_consistency"} 1.0' in lines
    assert 'ponder_search_samples_bucket{le="8.0",strategy="self_consistency"} 2.0' in lines
    assert 'ponder_search_samples_sum{strategy="self_consistency"} 8.0' in lines


# ---- errors ----


@pytest.mark.parametrize(
    ("body", "param", "contains"),
    [
        (chat_body(temperature=3), "temperature", "less than or equal to 2"),
        (chat_body(n=0), "n", "greater than or equal to 1"),
        (chat_body(top_p=0), "top_p", "greater than 0"),
        (chat_body(max_tokens=0), "max_tokens", ""),
        (chat_body(top_logprobs=2), None, "top_logprobs requires logprobs"),
        (chat_body(logprobs=True, top_logprobs=21), "top_logprobs", ""),
        ({"model": MODEL, "messages": []}, "messages", "at least 1"),
        ({"model": MODEL}, "messages", "required"),
        (chat_body(messages=[{"role": "wizard", "content": "x"}]), "messages.0.role", ""),
        (chat_body(stop=[""]), "stop", "non-empty"),
        (chat_body(tools=[{"type": "function"}]), "tools.0.function", "required"),
        (chat_body(reasoning_effort="extreme"), "reasoning_effort", ""),
        (chat_body(reasoning_effort="low", thinking_level="high"), None, "not both"),
        (chat_body(thinking_budget=-2), "thinking_budget", ""),
        (chat_body(budget={"max_samples": 0}), "budget.max_samples", ""),
        (chat_body(budget={"max_coins": 3}), "budget.max_coins", "extra"),
        (chat_body(stream_options={"include_usage": True}), None, "stream_options"),
        (chat_body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "messages.0.content", "image_url"),
    ],
)
async def test_invalid_parameters_are_400_with_param(body, param, contains):
    app, engine = fake_app()
    resp = await post(app, "/v1/chat/completions", body)
    assert_error(resp, 400, param, contains)
    assert engine.calls == []


async def test_unknown_strategy_names_valid_values():
    app, _ = fake_app()
    err = assert_error(await post(app, "/v1/chat/completions", chat_body(strategy="monte_carlo")), 400, "strategy")
    assert "monte_carlo" in err["message"] and "none" in err["message"] and "mcts" in err["message"]


async def test_strategy_options_unknown_key_and_unknown_verifier():
    app, _ = fake_app()
    body = chat_body(strategy="none", strategy_options={"beam_width": 4})
    assert_error(await post(app, "/v1/chat/completions", body), 400, "strategy_options", "beam_width")
    assert_error(await post(app, "/v1/chat/completions", chat_body(verifier="prm")), 400, "verifier", "prm")


async def test_budget_is_clamped_and_says_so():
    app, _ = fake_app(settings=ServerSettings(limits=Limits(max_samples=8)))
    data = (await post(app, "/v1/chat/completions", chat_body(budget={"max_samples": 100, "max_tokens": 10}))).json()
    assert data["ponder"]["budget"]["max_samples"] == 8
    assert data["ponder"]["budget"]["max_tokens"] == 10
    assert data["ponder"]["budget_clamped"] == ["max_samples"]


async def test_extensions_accepted_on_completions_too():
    app, _ = fake_app()
    body = {"model": MODEL, "prompt": "x", "reasoning_effort": "high", "budget": {"max_tokens": 5}}
    data = (await post(app, "/v1/completions", body)).json()
    assert data["ponder"]["effort"] == "high"


async def test_invalid_json_body_is_400():
    app, _ = fake_app()
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert_error(resp, 400, None, "json")


async def test_unknown_model_is_404():
    app, _ = fake_app()
    assert_error(await post(app, "/v1/chat/completions", chat_body(model="gpt-9")), 404, "model", "gpt-9")


async def test_unknown_route_is_openai_shaped_404():
    app, _ = fake_app()
    async with client(app) as c:
        assert_error(await c.get("/v1/nothing"), 404)


async def test_prompt_too_long_is_400_also_when_streaming():
    app, _ = fake_app(FakeEngine(capabilities=EngineCapabilities(max_model_len=4)))
    long = chat_body(messages=[{"role": "user", "content": "many words " * 10}])
    assert_error(await post(app, "/v1/chat/completions", long), 400, "messages", "maximum context length")
    assert_error(await post(app, "/v1/chat/completions", {**long, "stream": True}), 400, "messages", "context")
    short = chat_body(messages=[{"role": "user", "content": "hi"}], max_tokens=100)
    assert_error(await post(app, "/v1/chat/completions", short), 400, "max_tokens")


async def test_engine_capabilities_are_enforced():
    caps = EngineCapabilities(max_model_len=512, logprobs=False, seed=False, penalties=False, prefix_continuation=False)
    app, _ = fake_app(FakeEngine(capabilities=caps))
    assert_error(await post(app, "/v1/chat/completions", chat_body(logprobs=True)), 400, "logprobs")
    assert_error(await post(app, "/v1/chat/completions", chat_body(seed=1)), 400, "seed")
    assert_error(await post(app, "/v1/chat/completions", chat_body(presence_penalty=1)), 400, "presence_penalty")
    cont = chat_body(messages=[{"role": "assistant", "content": "x"}], continue_final_message=True)
    assert_error(await post(app, "/v1/chat/completions", cont), 400, "continue_final_message")


async def test_limits_n_stop_and_body_size():
    settings = ServerSettings(limits=Limits(max_n=4, max_stop=2, max_body_bytes=2000))
    app, _ = fake_app(settings=settings)
    assert_error(await post(app, "/v1/chat/completions", chat_body(n=5)), 400, "n", "at most 4")
    assert_error(await post(app, "/v1/chat/completions", chat_body(stop=["a", "b", "c"])), 400, "stop")
    big = chat_body(messages=[{"role": "user", "content": "x" * 5000}])
    assert_error(await post(app, "/v1/chat/completions", big), 413, None, "larger than")


async def test_api_key_required_except_health():
    app, _ = fake_app(settings=ServerSettings(api_key="sekret"))
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 200
        assert_error(await c.get("/v1/models"), 401, None, "api key")
        assert_error(await c.get("/metrics"), 401)
        wrong = await c.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401)
        ok = await c.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200


async def test_over_max_concurrency_is_503_with_retry_after():
    import asyncio

    engine = FakeEngine(lambda p, s, i: "slow " * 20, token_delay=0.02)
    app, _ = fake_app(engine, ServerSettings(limits=Limits(max_concurrency=1)))
    async with client(app) as c:
        first = asyncio.create_task(c.post("/v1/chat/completions", json=chat_body()))
        while engine.active == 0:
            await asyncio.sleep(0.005)
        second = await c.post("/v1/chat/completions", json=chat_body())
        assert_error(second, 503, None, "limit")
        assert second.headers["retry-after"] == "1"
        assert (await first).status_code == 200
        assert (await c.post("/v1/chat/completions", json=chat_body())).status_code == 200


async def test_engine_error_mid_stream_is_one_error_event_then_done():
    class Broken(FakeEngine):
        async def stream(self, prompt, params, n=1):
            async for delta in super().stream(prompt, params, n):
                yield delta
                if delta.text.strip() == "b":
                    raise RuntimeError("engine exploded")

    app, _ = fake_app(Broken(lambda p, s, i: "a b c d"))
    events = sse_events((await post(app, "/v1/chat/completions", chat_body(stream=True))).text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == 500
    assert all("error" not in e for e in events[:-2])


async def test_bug_is_500_openai_shaped():
    class Buggy(FakeEngine):
        async def generate(self, prompt, params, n=1):
            raise KeyError("oops")

    app, _ = fake_app(Buggy())
    assert_error(await post(app, "/v1/chat/completions", chat_body()), 500, None, "internal")
