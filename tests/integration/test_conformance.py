"""OpenAI conformance found with real clients: fingerprints, request ids, greedy sampling, usage and logprobs."""

from __future__ import annotations

import pytest

from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine, TableVerifier
from ponder.verifiers.registry import VerifierSet
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "What is 2+3?"}]


def chat(**extra) -> dict:
    return {"model": MODEL, "messages": MESSAGES, **extra}


def completion(**extra) -> dict:
    return {"model": MODEL, "prompt": "2+3=", **extra}


def five(prompt, params, index) -> str:
    """Sample i answers 5 when i is even, else i."""
    answer = 5 if index % 2 == 0 else index
    return f"<think>2+3={answer}\n</think>{answer}"


def verified_app(engine: FakeEngine | None = None, **settings):
    verifiers = VerifierSet([TableVerifier({}, default=0.5, name="orm")], default="orm")
    return fake_app(engine or FakeEngine(five), ServerSettings(**settings), verifiers)


# ---- system_fingerprint and x-request-id ----

STREAMS = [
    ("/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True})),
    ("/v1/chat/completions", chat(stream=True, n=2, strategy="best_of_n")),
    ("/v1/completions", completion(stream=True, echo=True, stream_options={"include_usage": True})),
    ("/v1/completions", completion(stream=True, strategy="self_consistency")),
]


@pytest.mark.parametrize(("path", "body"), STREAMS)
async def test_every_chunk_and_response_carries_the_system_fingerprint(path, body):
    app, _ = verified_app()
    async with client(app) as c:
        streamed = await c.post(path, json=body)
        whole = await c.post(path, json={**body, "stream": False, "stream_options": None})
    chunks = [e for e in sse_events(streamed.text) if e != "[DONE]"]
    fingerprint = whole.json()["system_fingerprint"]
    assert fingerprint and fingerprint.startswith("fp_")
    assert len(chunks) > 2 and all(chunk["system_fingerprint"] == fingerprint for chunk in chunks)


async def test_x_request_id_is_echoed_or_made_up_on_every_response():
    app, _ = verified_app(api_key="k")
    auth = {"Authorization": "Bearer k"}
    async with client(app) as c:
        mine = await c.post("/v1/chat/completions", json=chat(), headers={**auth, "X-Request-Id": "abc-123"})
        assert mine.status_code == 200 and mine.headers["x-request-id"] == "abc-123"
        made = [
            await c.post("/v1/chat/completions", json=chat(), headers=auth),
            await c.post("/v1/chat/completions", json=chat(stream=True), headers=auth),
            await c.post("/v1/chat/completions", json=chat()),  # 401
            await c.post("/v1/chat/completions", json=chat(model="nope"), headers=auth),  # 404
            await c.post("/v1/chat/completions", json=chat(n=0), headers=auth),  # 400
            await c.get("/health"),
        ]
        odd = await c.get("/health", headers={"X-Request-Id": "x" * 500})  # too long to echo: a new one
    assert [r.status_code for r in made] == [200, 200, 401, 404, 400, 200]
    ids = [r.headers["x-request-id"] for r in [*made, odd]]
    assert len(set(ids)) == len(ids) and all(8 <= len(i) <= 64 for i in ids)


# ---- temperature 0 (lm-eval's default) with several samples ----


class GreedyIsOne(FakeEngine):
    """Refuses ``n > 1`` at temperature 0 as vLLM's sampler does."""

    async def stream(self, prompt, params, n=1):
        if params.temperature == 0 and n > 1:
            from ponder.core.errors import InvalidRequestError

            raise InvalidRequestError(f"n must be 1 when using greedy sampling, got {n}.", param="n")
        async for delta in super().stream(prompt, params, n):
            yield delta


@pytest.mark.parametrize(
    "knobs",
    [
        {"strategy": "best_of_n"},
        {"strategy": "self_consistency"},
        {"strategy": "compute_optimal"},
        {"reasoning_effort": "low"},
        {"reasoning_effort": "medium"},
        {"reasoning_effort": "auto"},
        {"strategy": "beam_search", "verifier": "steps"},
    ],
)
async def test_a_greedy_request_samples_its_candidates_at_the_documented_temperature(knobs):
    from ponder.strategies.base import GREEDY_SAMPLING_TEMPERATURE
    from ponder.testing import RulePRM

    verifiers = VerifierSet([TableVerifier({}, default=0.5, name="orm"), RulePRM(name="steps")], default="orm")
    app, engine = fake_app(GreedyIsOne(five), ServerSettings(), verifiers)
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", json=chat(temperature=0, max_tokens=32, **knobs))
        warm = await c.post("/v1/chat/completions", json=chat(temperature=0.3, max_tokens=32, **knobs))
    assert resp.status_code == 200, resp.text
    assert resp.json()["ponder"]["sampling_temperature"] == GREEDY_SAMPLING_TEMPERATURE == 0.8
    temperatures = {params.temperature for _prompt, params, _n in engine.calls}
    assert temperatures == {0.8, 0.3} and any(n > 1 for _p, _s, n in engine.calls)
    assert warm.status_code == 200 and "sampling_temperature" not in warm.json()["ponder"]


async def test_a_greedy_request_keeps_its_temperature_where_one_sample_at_a_time_is_drawn():
    app, engine = fake_app(GreedyIsOne(five))
    async with client(app) as c:
        plain = await c.post("/v1/chat/completions", json=chat(temperature=0))
        traced = await c.post("/v1/chat/completions", json=chat(temperature=0, return_trace=True))
    assert plain.status_code == traced.status_code == 200
    assert "sampling_temperature" not in traced.json()["ponder"]
    assert {params.temperature for _prompt, params, _n in engine.calls} == {0}


# ---- usage and logprobs: reasoning tokens, cached tokens, the answer's logprobs apart ----

THINKER = "<think>a b c</think> x y"  # fake tokens: "<think>a", " b", " c</think>" (thinking), " x", " y"


def usage_of(path: str, resp) -> dict:
    if resp.headers["content-type"].startswith("text/event-stream"):
        return [e for e in sse_events(resp.text) if e != "[DONE]" and e.get("usage")][-1]["usage"]
    return resp.json()["usage"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_reasoning_and_cached_tokens_are_the_same_streamed_or_not(path):
    app, _ = fake_app(FakeEngine(lambda p, s, i: THINKER, cached_tokens=2))
    body = chat(n=2) if path.endswith("chat/completions") else completion(n=2)
    async with client(app) as c:
        whole = await c.post(path, json=body)
        streamed = await c.post(path, json={**body, "stream": True, "stream_options": {"include_usage": True}})
    usage = usage_of(path, whole)
    assert usage == usage_of(path, streamed)
    assert usage["completion_tokens"] == 10 and usage["completion_tokens_details"] == {"reasoning_tokens": 6}
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2}


async def test_a_search_counts_the_candidates_not_returned_and_the_answers_thinking_as_reasoning():
    app, _ = verified_app(FakeEngine(lambda p, s, i: THINKER))
    async with client(app) as c:
        data = (await c.post("/v1/chat/completions", json=chat(strategy="best_of_n", budget={"max_samples": 4}))).json()
    assert data["usage"]["completion_tokens"] == 20
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 15 + 3


async def test_logprobs_content_covers_the_answer_and_the_thinking_tokens_come_apart():
    app, _ = fake_app(FakeEngine(lambda p, s, i: THINKER))
    body = chat(logprobs=True, top_logprobs=1)
    async with client(app) as c:
        whole = (await c.post("/v1/chat/completions", json=body)).json()["choices"][0]
        streamed = sse_events((await c.post("/v1/chat/completions", json={**body, "stream": True})).text)
        hidden = (await c.post("/v1/chat/completions", json={**body, "include_reasoning": False})).json()
    tokens = {k: [t["token"] for t in v or []] for k, v in whole["logprobs"].items()}
    assert tokens == {"content": [" x", " y"], "reasoning_content": ["<think>a", " b", " c</think>"]}
    assert whole["message"]["content"] == "".join(tokens["content"])
    parts = [e["choices"][0]["logprobs"] for e in streamed[:-1] if e["choices"] and e["choices"][0].get("logprobs")]
    assert [t["token"] for p in parts for t in p["content"]] == tokens["content"]
    assert [t["token"] for p in parts for t in p["reasoning_content"] or []] == tokens["reasoning_content"]
    assert hidden["choices"][0]["logprobs"]["reasoning_content"] is None
    assert [t["token"] for t in hidden["choices"][0]["logprobs"]["content"]] == tokens["content"]


# ---- /v1/completions as lm-eval's local-completions drives it ----


async def test_echo_with_logprobs_returns_the_prompts_logprobs_then_the_completions():
    app, engine = fake_app(FakeEngine(lambda p, s, i: " four"))
    body = completion(prompt="two plus two", echo=True, logprobs=1, max_tokens=1, temperature=0)
    async with client(app) as c:
        whole = (await c.post("/v1/completions", json=body)).json()["choices"][0]
        streamed = sse_events((await c.post("/v1/completions", json={**body, "stream": True})).text)
    assert engine.calls[0][1].prompt_logprobs == 1
    assert whole["text"] == "two plus two four"
    lps = whole["logprobs"]
    assert lps["tokens"] == ["two", " plus", " two", " four"]
    assert lps["token_logprobs"][0] is None and all(isinstance(x, float) for x in lps["token_logprobs"][1:])
    assert lps["top_logprobs"][0] is None and all(len(t) == 1 for t in lps["top_logprobs"][1:])
    assert lps["text_offset"] == [0, 3, 8, 12]
    # lm-eval's loglikelihood: the context's tokens by count, the continuation's logprobs after them
    chunks = [e["choices"][0] for e in streamed if e != "[DONE]" and e["choices"]]
    assert "".join(ch["text"] for ch in chunks) == whole["text"]
    streamed_tokens = [t for ch in chunks if ch.get("logprobs") for t in ch["logprobs"]["tokens"]]
    assert streamed_tokens == lps["tokens"]
    offsets = [o for ch in chunks if ch.get("logprobs") for o in ch["logprobs"]["text_offset"]]
    assert offsets == lps["text_offset"]


@pytest.mark.parametrize(("prompt", "echoes"), [([5, 6, 7], [" t5 t6 t7"]), ([[5, 6], [7]], [" t5 t6", " t7"])])
async def test_token_id_prompts_as_openai_takes_them(prompt, echoes):
    app, engine = fake_app()
    async with client(app) as c:
        data = (await c.post("/v1/completions", json=completion(prompt=prompt, echo=True, max_tokens=3))).json()
        searched = await c.post("/v1/completions", json=completion(prompt=prompt, strategy="self_consistency"))
    assert [call[0].token_ids for call in engine.calls[: len(echoes)]] == [
        tuple(p) for p in (prompt if isinstance(prompt[0], list) else [prompt])
    ]
    assert [ch["text"][: len(e)] for ch, e in zip(data["choices"], echoes, strict=True)] == echoes
    assert data["usage"]["prompt_tokens"] == sum(len(e.split()) for e in echoes)
    assert searched.status_code == 200  # a search reads the prompt decoded to text


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ([{"role": "user", "content": "hi"}], "list of chat messages; /v1/completions takes text or token ids"),
        ([1, -2], "non-negative"),
        ([[1], []], "must not be empty"),
        ([1, "a"], "a list of token ids or a list of token-id lists"),
    ],
)
async def test_bad_prompts_are_400s_that_say_what_is_wrong(prompt, says):
    app, engine = fake_app()
    async with client(app) as c:
        resp = await c.post("/v1/completions", json=completion(prompt=prompt))
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"
    assert says in resp.json()["error"]["message"] and not engine.calls


async def test_a_token_id_prompt_longer_than_the_context_is_refused_before_the_engine():
    app, engine = fake_app()
    async with client(app) as c:
        resp = await c.post("/v1/completions", json=completion(prompt=list(range(600))))
    assert resp.status_code == 400 and "maximum context length" in resp.json()["error"]["message"]
    assert not engine.calls
