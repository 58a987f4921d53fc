"""OpenAIEngine over a scripted upstream (httpx.MockTransport): request translation, parsing, SSE, errors, probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import httpx
import pytest

from ponder.core.errors import (
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PromptTooLongError,
    UpstreamError,
)
from ponder.core.protocols import Engine
from ponder.core.types import Prompt, SamplingParams, TokenLogprob
from ponder.engines.openai_engine import DEFAULT_MAX_MODEL_LEN, OpenAIEngine, _apportion

URL = "http://upstream:8000"
CHAT = Prompt.chat([{"role": "user", "content": "hi"}])
Handler = Callable[[str, dict], httpx.Response | None]


def ok(payload: dict) -> httpx.Response:
    return httpx.Response(200, json=payload)


def error(status: int, message: str, param: str | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": "BadRequestError", "param": param, "code": status}}
    )


def chat_choice(index: int, content: str, **extra) -> dict:
    return {"index": index, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", **extra}


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def vllm_like(path: str, body: dict) -> httpx.Response:
    """What vLLM answers to the probes (one-token generations, /tokenize, /v1/models)."""
    if path == "/v1/models":
        return ok({"object": "list", "data": [{"id": "tiny", "object": "model", "max_model_len": 512}]})
    if path == "/tokenize":
        return ok({"count": 3, "max_model_len": 512, "tokens": [1, 2, 3]})
    if path == "/v1/chat/completions":
        choice = chat_choice(0, "x", finish_reason="length")
        data = {"choices": [choice], "usage": usage(8, 1)}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": "x", "logprob": -1.0, "top_logprobs": []}]}
        if body.get("return_token_ids"):
            choice["token_ids"] = [7]
        if body.get("return_prompt_text"):
            data["prompt_text"] = "<|user|>Hi<|end|><|assistant|>" + body["messages"][-1]["content"]
        if body.get("prompt_logprobs") is not None:
            data["prompt_logprobs"] = [None] + [{"5": {"logprob": -2.0, "rank": 1}}] * 7
        return ok(data)
    return None


class Upstream:
    """A scripted upstream: ``handler(path, body)`` answers first, then vLLM-like defaults; records requests."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[tuple[str, dict | None, httpx.Headers]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.url.path, body, request.headers))
        for handler in (self.handler, vllm_like):
            resp = handler(request.url.path, body or {}) if handler else None
            if resp is not None:
                return resp
        return httpx.Response(404, json={"detail": "Not Found"})

    def bodies(self, path: str, **having) -> list[dict]:
        """Bodies sent to ``path`` that contain every ``key=value`` in ``having``."""
        return [
            b for p, b, _ in self.requests if p == path and all(b.get(k) == v for k, v in having.items())
        ]  # fmt: skip

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def is_probe(body: dict) -> bool:
    return body.get("max_tokens") == 1 and body.get("messages", [{}])[0].get("content") == "Hi"


def on_chat(reply: Callable[[dict], httpx.Response]) -> Handler:
    """A handler answering the chat generations that are not capability probes with ``reply(body)``."""
    return lambda path, body: reply(body) if path == "/v1/chat/completions" and not is_probe(body) else None


async def started(handler: Handler | None = None, **kwargs) -> tuple[OpenAIEngine, Upstream]:
    upstream = Upstream(handler)
    engine = OpenAIEngine(URL + "/v1", client=upstream.client(), **kwargs)
    await engine.start()
    return engine, upstream


# ---------------------------------------------------------------- start-up and capability detection


async def test_start_detects_everything_on_a_vllm_like_upstream():
    engine, upstream = await started(api_key="sk-up")
    assert isinstance(engine, Engine)
    assert engine.model_id == "tiny"
    caps = engine.capabilities
    assert (caps.max_model_len, caps.logprobs, caps.prefix_continuation, caps.scoring) == (512, True, True, True)
    assert caps.seed and caps.penalties
    assert engine.returns_token_ids and engine.has_tokenize
    # /v1 is stripped from the base URL; the key goes upstream as a bearer token
    assert {p for p, _, _ in upstream.requests} == {"/v1/models", "/v1/chat/completions", "/tokenize"}
    assert all(h["authorization"] == "Bearer sk-up" for _, _, h in upstream.requests)
    prefix_probe = upstream.bodies("/v1/chat/completions", continue_final_message=True)[0]
    assert prefix_probe["add_generation_prompt"] is False
    assert prefix_probe["messages"][-1]["role"] == "assistant"


async def test_start_picks_the_requested_model_and_refuses_an_unknown_one():
    def two_models(path, body):
        if path == "/v1/models":
            return ok({"data": [{"id": "a", "max_model_len": 100}, {"id": "b", "root": "/models/b"}]})
        return None

    engine, upstream = await started(two_models, model="/models/b")
    assert engine.model_id == "b"  # matched by root, sent upstream by id
    assert {b["model"] for b in upstream.bodies("/v1/chat/completions")} == {"b"}
    assert engine.capabilities.max_model_len == 512  # not on b's card: from /tokenize

    with pytest.raises(NotFoundError) as info:
        await started(two_models, model="c")
    assert "`c`" in info.value.message and "a, b" in info.value.message
    assert info.value.status == 404


async def test_failed_probes_leave_capabilities_false_without_failing_start():
    extensions = {"logprobs", "continue_final_message", "prompt_logprobs", "return_token_ids"}

    def plain_openai(path, body):
        if path == "/v1/models":
            return ok({"data": [{"id": "gpt"}]})  # no max_model_len
        if path == "/tokenize":
            return httpx.Response(404, json={"detail": "Not Found"})
        if extensions & body.keys():
            return error(400, "unrecognized request argument")
        return None

    engine, _ = await started(plain_openai)
    caps = engine.capabilities
    assert (caps.logprobs, caps.prefix_continuation, caps.scoring) == (False, False, False)
    assert not engine.returns_token_ids and not engine.has_tokenize
    assert caps.max_model_len == DEFAULT_MAX_MODEL_LEN
    with pytest.raises(InvalidRequestError) as info:
        await engine.generate(Prompt.chat(CHAT.messages, prefix="So"), SamplingParams())
    assert info.value.param == "prefix"
    with pytest.raises(InvalidRequestError):
        await engine.score(CHAT, "x")
    with pytest.raises(InvalidRequestError) as info:
        await engine.generate(CHAT, SamplingParams(logprobs=1))
    assert info.value.param == "logprobs"


async def test_probes_that_crash_time_out_or_are_ignored_count_as_unsupported():
    def flaky(path, body):
        if body.get("logprobs"):
            return httpx.Response(500, text="boom")
        if body.get("return_token_ids"):
            raise httpx.ReadTimeout("slow")
        if body.get("continue_final_message"):
            # an upstream that ignores the extension: the rendered prompt opens a new turn after ours
            return ok({"choices": [chat_choice(0, "x")], "prompt_text": "...Hel<|end|><|assistant|>"})
        return None

    engine, _ = await started(flaky)
    caps = engine.capabilities
    assert (caps.logprobs, caps.prefix_continuation, caps.scoring) == (False, False, False)
    assert not engine.returns_token_ids


async def test_start_fails_clearly_when_the_upstream_is_unreachable_or_the_key_is_wrong():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    engine = OpenAIEngine(URL, client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(UpstreamError) as info:
        await engine.start()
    assert info.value.status == 502 and "Cannot reach" in info.value.message and URL in info.value.message

    with pytest.raises(UpstreamError) as info:
        await started(lambda path, body: error(401, "Invalid API key"), api_key="wrong")
    assert "API key" in info.value.message and "401" in info.value.message


# ---------------------------------------------------------------- request translation


async def test_chat_request_body_translation():
    engine, upstream = await started(on_chat(lambda b: reply(b)))

    def reply(body):
        n = body["n"]
        return ok({"choices": [chat_choice(i, "ok", token_ids=[1]) for i in range(n)], "usage": usage(3, n)})

    params = SamplingParams(
        max_tokens=7, temperature=0.5, top_p=0.9, stop=("\n", "END"), seed=11, logprobs=2, presence_penalty=0.25
    )
    await engine.generate(CHAT, params, n=3)
    body = upstream.bodies("/v1/chat/completions", n=3)[0]
    assert body["model"] == "tiny" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.5, 0.9, 11)
    assert body["stop"] == ["\n", "END"]
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert body["presence_penalty"] == 0.25 and "frequency_penalty" not in body
    assert body["return_token_ids"] is True
    assert "stream" not in body and "continue_final_message" not in body

    await engine.generate(CHAT, SamplingParams(), n=1)
    body = upstream.bodies("/v1/chat/completions", n=1)[-1]
    for absent in ("max_tokens", "stop", "seed", "logprobs", "top_logprobs", "presence_penalty"):
        assert absent not in body, absent

    await engine.generate(Prompt.chat(CHAT.messages, prefix="<think>Let me"), SamplingParams(), n=2)
    body = upstream.bodies("/v1/chat/completions", n=2)[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>Let me"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


async def test_raw_prompts_go_to_completions():
    def completions(path, body):
        if path != "/v1/completions":
            return None
        choices = [
            {
                "index": 0,
                "text": "ab",
                "finish_reason": "length",
                "logprobs": {"tokens": ["a", "b"], "token_logprobs": [-0.5, -0.25], "top_logprobs": [{"a": -0.5}, {}]},
            }
        ]
        return ok({"choices": choices, "usage": usage(4, 2)})

    engine, upstream = await started(completions)
    [sample] = await engine.generate(Prompt.raw("1+1="), SamplingParams(max_tokens=2, logprobs=1))
    body = upstream.bodies("/v1/completions")[0]
    assert body["prompt"] == "1+1=" and body["logprobs"] == 1 and "messages" not in body
    assert sample.text == "ab" and sample.num_tokens == 2 and sample.finish_reason == "length"
    assert sample.logprobs == [TokenLogprob("a", -0.5, (("a", -0.5),)), TokenLogprob("b", -0.25, ())]
    assert sample.cumulative_logprob == -0.75


# ---------------------------------------------------------------- response parsing


async def test_samples_in_index_order_with_exact_token_counts():
    def reply(path, body):
        if is_probe(body) or path != "/v1/chat/completions":
            return None
        lp = {"content": [{"token": "a", "logprob": -0.1, "top_logprobs": [{"token": "a", "logprob": -0.1}]}]}
        choices = [  # out of order, as an upstream may send them
            chat_choice(2, "ccc", token_ids=[1, 2, 3], finish_reason="length", logprobs=lp),
            chat_choice(0, "a", token_ids=[1], stop_reason="\n", logprobs=lp),
            chat_choice(1, "bb", token_ids=[1, 2], stop_reason=None, logprobs=lp),
        ]
        data = {"choices": choices, "usage": {**usage(9, 6), "prompt_tokens_details": {"cached_tokens": 4}}}
        return ok(data)

    engine, _ = await started(reply)
    samples = await engine.generate(CHAT, SamplingParams(logprobs=1), n=3)
    assert [s.text for s in samples] == ["a", "bb", "ccc"]
    assert [s.num_tokens for s in samples] == [1, 2, 3]
    assert [s.finish_reason for s in samples] == ["stop", "stop", "length"]
    assert [s.stop_reason for s in samples] == ["\n", None, None]
    assert all(s.prompt_tokens == 9 and s.cached_tokens == 4 for s in samples)
    assert samples[0].logprobs == [TokenLogprob("a", -0.1, (("a", -0.1),))]


async def test_token_counts_without_token_ids_come_from_logprobs_and_sum_to_usage():
    def reply(path, body):
        if is_probe(body) or path != "/v1/chat/completions":
            return None
        n = body["n"]
        choices = []
        for i in range(n):
            choice = chat_choice(i, "x" * (i + 1))
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [{"token": "t", "logprob": -1.0}] * (2 * i + 1)}
            choices.append(choice)
        total = sum(2 * i + 1 for i in range(n))
        return ok({"choices": choices, "usage": usage(5, total)})

    engine, upstream = await started(reply)
    engine.returns_token_ids = False  # as on an upstream without vLLM's return_token_ids
    samples = await engine.generate(CHAT, SamplingParams(), n=3)
    body = upstream.bodies("/v1/chat/completions", n=3)[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 0  # asked only to count tokens
    assert [s.num_tokens for s in samples] == [1, 3, 5]
    assert all(s.logprobs is None for s in samples)  # not asked for by the caller

    # no logprobs either: the total is apportioned by text length, still summing to the upstream's count
    engine.capabilities = type(engine.capabilities)(max_model_len=512, logprobs=False)
    samples = await engine.generate(CHAT, SamplingParams(), n=3)
    assert "logprobs" not in upstream.bodies("/v1/chat/completions", n=3)[-1]
    assert sum(s.num_tokens for s in samples) == 9
    assert [s.num_tokens for s in samples] == _apportion(9, [1, 2, 3]) == [2, 3, 4]


async def test_n1_takes_the_usage_count():
    engine, _ = await started(on_chat(lambda b: ok({"choices": [chat_choice(0, "hello")], "usage": usage(3, 4)})))
    engine.returns_token_ids = False
    [sample] = await engine.generate(CHAT, SamplingParams())
    assert sample.num_tokens == 4 and sample.prompt_tokens == 3


@pytest.mark.parametrize(
    ("message", "prefix", "expected"),
    [
        ({"reasoning_content": "2+2 is 4", "content": "4"}, "", "<think>2+2 is 4</think>4"),
        ({"reasoning": "think", "content": "answer"}, "", "<think>think</think>answer"),  # vLLM's field name
        ({"reasoning_content": "cut off", "content": None}, "", "<think>cut off"),
        ({"reasoning_content": " more", "content": "4"}, "<think>step 1.", " more</think>4"),
        ({"reasoning_content": None, "content": "plain"}, "", "plain"),
    ],
)
async def test_upstream_reasoning_is_put_back_as_think_tags(message, prefix, expected):
    def reply(path, body):
        if is_probe(body) or path != "/v1/chat/completions":
            return None
        choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
        return ok({"choices": [choice], "usage": usage(3, 5)})

    engine, _ = await started(reply)
    [sample] = await engine.generate(Prompt.chat(CHAT.messages, prefix=prefix), SamplingParams())
    assert sample.text == expected


def test_apportion_sums_exactly():
    assert _apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert _apportion(7, [0, 0]) == [4, 3]
    assert _apportion(0, [5, 5]) == [0, 0]
    assert sum(_apportion(101, [3, 17, 29, 1])) == 101


# ---------------------------------------------------------------- streaming


def sse(*events: dict | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def chunk(index: int, content: str | None = None, *, finish: str | None = None, **extra) -> dict:
    delta = {"content": content} if content is not None else {}
    delta.update(extra.pop("delta", {}))
    choice = {"index": index, "delta": delta, "finish_reason": finish, **extra}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def streaming(body_bytes: bytes) -> Handler:
    def handler(path, body):
        if body.get("stream"):
            return httpx.Response(200, content=body_bytes, headers={"content-type": "text/event-stream"})
        return None

    return handler


async def collect(engine: OpenAIEngine, prompt: Prompt = CHAT, params: SamplingParams | None = None, n: int = 1):
    return [d async for d in engine.stream(prompt, params or SamplingParams(), n)]


async def test_greedy_n_asks_the_upstream_for_one_sample_and_copies_it():
    """vLLM upstreams refuse n > 1 at temperature 0 ("n must be 1 when using greedy sampling")."""

    def greedy_is_one(body):
        if body["n"] > 1 and body["temperature"] == 0:
            return error(400, f"n must be 1 when using greedy sampling, got {body['n']}.")
        return ok({"choices": [chat_choice(0, "same", token_ids=[1, 2])], "usage": usage(5, 2)})

    engine, upstream = await started(on_chat(greedy_is_one))
    samples = await engine.generate(CHAT, SamplingParams(temperature=0.0), n=3)
    assert [(s.text, s.num_tokens) for s in samples] == [("same", 2)] * 3
    assert [b["n"] for b in upstream.bodies("/v1/chat/completions") if not is_probe(b)] == [1]


async def test_token_id_prompts_go_upstream_as_ids_and_prompt_logprobs_are_refused():
    def completions(path, body):
        if path == "/v1/completions":
            choice = {"index": 0, "text": " x", "finish_reason": "length", "token_ids": [9]}
            return ok({"choices": [choice], "usage": usage(3, 1)})
        return None

    engine, upstream = await started(completions)
    [sample] = await engine.generate(Prompt.tokens([1, 2, 3]), SamplingParams(max_tokens=1))
    assert sample.text == " x" and upstream.bodies("/v1/completions")[-1]["prompt"] == [1, 2, 3]
    with pytest.raises(InvalidRequestError, match="echo with logprobs") as info:
        await engine.generate(Prompt.raw("hi"), SamplingParams(max_tokens=1, logprobs=1, prompt_logprobs=1))
    assert info.value.param == "echo"


async def test_stream_n2_interleaved_with_usage_chunk():
    events = sse(
        {**chunk(0, "", delta={"role": "assistant"}), "prompt_token_ids": [1, 2, 3, 4]},
        chunk(1, "", delta={"role": "assistant"}),
        chunk(0, "He", token_ids=[5, 6]),
        chunk(1, "Y", token_ids=[7]),
        chunk(0, "llo", token_ids=[8, 9, 10], finish="stop", stop_reason="\n"),
        chunk(1, "es", token_ids=[11]),
        chunk(1, "", token_ids=[], finish="length"),
        {"choices": [], "usage": usage(4, 7)},
        "[DONE]",
    )
    engine, upstream = await started(streaming(events))
    deltas = await collect(engine, params=SamplingParams(max_tokens=3, stop=("\n",)), n=2)
    body = upstream.bodies("/v1/chat/completions", stream=True)[0]
    assert body["stream_options"] == {"include_usage": True} and body["n"] == 2 and body["return_token_ids"]
    assert [(d.index, d.text, d.num_tokens, d.finish_reason) for d in deltas] == [
        (0, "He", 2, None),
        (1, "Y", 1, None),
        (0, "llo", 3, "stop"),
        (1, "es", 1, None),
        (1, "", 0, "length"),
    ]
    assert deltas[2].stop_reason == "\n" and deltas[-1].stop_reason is None
    assert all(d.prompt_tokens == 4 for d in deltas)
    assert sum(d.num_tokens for d in deltas) == 7
    assert engine.num_unfinished_requests() == 0


async def test_stream_without_token_ids_counts_deltas_and_the_last_finish_absorbs_the_shortfall():
    events = sse(
        chunk(0, "", delta={"role": "assistant"}),
        chunk(0, "ab"),  # one chunk, but two tokens upstream
        chunk(0, "c"),
        chunk(0, "", finish="stop"),  # a token (eos) that adds no text
        {"choices": [], "usage": usage(6, 4)},
        "[DONE]",
    )
    engine, upstream = await started(streaming(events))
    engine.returns_token_ids = False
    engine.capabilities = type(engine.capabilities)(max_model_len=512, logprobs=False)
    deltas = await collect(engine)
    assert "return_token_ids" not in upstream.bodies("/v1/chat/completions", stream=True)[0]
    assert [(d.text, d.num_tokens, d.finish_reason) for d in deltas] == [
        ("ab", 1, None),
        ("c", 1, None),
        ("", 2, "stop"),
    ]
    assert deltas[-1].prompt_tokens == 6  # known from the usage chunk
    assert sum(d.num_tokens for d in deltas) == 4


async def test_stream_logprobs_and_reasoning_deltas():
    lp = {"content": [{"token": "x", "logprob": -0.5, "top_logprobs": [{"token": "x", "logprob": -0.5}]}]}
    events = sse(
        chunk(0, delta={"reasoning_content": "hmm"}, logprobs=lp),
        chunk(0, delta={"reasoning": " ok"}, logprobs=lp),
        chunk(0, "42", logprobs=lp, finish="stop"),
        {"choices": [], "usage": usage(2, 3)},
        "[DONE]",
    )
    engine, _ = await started(streaming(events))
    engine.returns_token_ids = False
    deltas = await collect(engine, params=SamplingParams(logprobs=1))
    assert "".join(d.text for d in deltas) == "<think>hmm ok</think>42"
    assert [d.num_tokens for d in deltas] == [1, 1, 1]
    assert deltas[0].logprobs == [TokenLogprob("x", -0.5, (("x", -0.5),))]


async def test_stream_of_raw_prompt_reads_completion_chunks():
    events = sse(
        {"choices": [{"index": 0, "text": "4", "finish_reason": None, "token_ids": [4], "prompt_token_ids": [1, 2]}]},
        {"choices": [{"index": 0, "text": "2", "finish_reason": "length", "token_ids": [2]}]},
        {"choices": [], "usage": usage(2, 2)},
        "[DONE]",
    )
    engine, upstream = await started(streaming(events))
    deltas = await collect(engine, Prompt.raw("6*7="), SamplingParams(max_tokens=2))
    assert upstream.bodies("/v1/completions", stream=True)[0]["prompt"] == "6*7="
    assert [(d.text, d.num_tokens, d.finish_reason, d.prompt_tokens) for d in deltas] == [
        ("4", 1, None, 2),
        ("2", 1, "length", 2),
    ]


async def test_stream_errors():
    in_band = sse(chunk(0, "a"), {"error": {"message": "engine died", "code": 500}}, "[DONE]")
    engine, _ = await started(streaming(in_band))
    with pytest.raises(UpstreamError, match="engine died"):
        await collect(engine)

    engine, _ = await started(lambda p, b: error(400, "bad stop", "stop") if b.get("stream") else None)
    with pytest.raises(InvalidRequestError) as info:
        await collect(engine)
    assert info.value.message == "bad stop" and info.value.param == "stop"

    truncated = sse(chunk(0, "a"), chunk(1, "b", finish="stop"))
    engine, _ = await started(streaming(truncated))
    with pytest.raises(UpstreamError, match="before all 2 samples finished"):
        await collect(engine, n=2)
    assert engine.num_unfinished_requests() == 0


class EndlessStream(httpx.AsyncByteStream):
    """An SSE body that never ends on its own; records whether the client closed it."""

    def __init__(self) -> None:
        self.closed = False
        self.sent = 0

    async def __aiter__(self):
        while True:
            self.sent += 1
            yield sse(chunk(0, "t", token_ids=[1]))
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        self.closed = True


async def test_closing_the_stream_early_closes_the_response():
    body = EndlessStream()
    engine, _ = await started(lambda p, b: httpx.Response(200, stream=body) if b.get("stream") else None)
    async with contextlib.aclosing(engine.stream(CHAT, SamplingParams())) as deltas:
        async for delta in deltas:
            assert engine.num_unfinished_requests() == 1
            if delta.index == 0 and body.sent >= 3:
                break
    assert body.closed
    assert engine.num_unfinished_requests() == 0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("response", "expected", "text"),
    [
        (error(400, "temperature must be non-negative", "temperature"), InvalidRequestError, "temperature must"),
        (
            error(400, "This model's maximum context length is 512 tokens. However, your prompt contains 600"),
            PromptTooLongError,
            "maximum context length",
        ),
        (error(400, "max_tokens=600 cannot be greater than max_model_len=512."), PromptTooLongError, "max_model_len"),
        (
            httpx.Response(422, json={"detail": [{"loc": ["body", "n"], "msg": "must be >= 1"}]}),
            InvalidRequestError,
            "n: must be >= 1",
        ),
        (
            httpx.Response(400, json={"object": "error", "message": "sglang says no", "code": 400}),
            InvalidRequestError,
            "sglang says no",
        ),
        (httpx.Response(500, text="Internal Server Error"), UpstreamError, "HTTP 500"),
        (httpx.Response(503, json={"error": {"message": "loading"}}), UpstreamError, "loading"),
        (error(401, "bad key"), UpstreamError, "upstream API key is wrong"),
        (httpx.Response(429, text="slow down"), OverloadedError, "slow down"),
    ],
)
async def test_error_mapping(response, expected, text):
    engine, _ = await started(on_chat(lambda b: response))
    with pytest.raises(expected) as info:
        await engine.generate(CHAT, SamplingParams(max_tokens=5))
    assert type(info.value) is expected
    assert text in info.value.message
    if expected is UpstreamError:
        assert info.value.status == 502
    if expected in (InvalidRequestError, PromptTooLongError):
        assert info.value.status == 400
    assert engine.num_unfinished_requests() == 0


@pytest.mark.parametrize(
    ("exc", "text"), [(httpx.ConnectError("refused"), "Cannot reach"), (httpx.ReadTimeout("slow"), "timed out")]
)
async def test_transport_errors_become_upstream_errors(exc, text):
    def fail(path, body):
        if not is_probe(body) and path == "/v1/chat/completions":
            raise exc
        return None

    engine, _ = await started(fail)
    with pytest.raises(UpstreamError) as info:
        await engine.generate(CHAT, SamplingParams())
    assert text in info.value.message and info.value.status == 502
    with pytest.raises(UpstreamError):
        await collect(engine)
    assert engine.num_unfinished_requests() == 0


# ---------------------------------------------------------------- scoring


def scoring(prompt_len: int, full_len: int, *, in_choice: bool = False) -> Handler:
    """Base prompt of ``prompt_len`` tokens; the full text's prompt logprobs are -1, -2, ... by position."""

    def handler(path, body):
        if path == "/tokenize":
            return ok({"count": prompt_len, "max_model_len": 512, "tokens": list(range(prompt_len))})
        if is_probe(body) or path == "/v1/models":
            return None
        if body.get("prompt_logprobs") == 0:
            plps = [None] + [{str(i): {"logprob": -float(i), "rank": 1}} for i in range(1, full_len)]
            data = {"choices": [chat_choice(0, "x")], "usage": usage(full_len, 1)}
            if in_choice:
                data["choices"][0]["prompt_logprobs"] = plps
            else:
                data["prompt_logprobs"] = plps
            return ok(data)
        return ok({"choices": [chat_choice(0, "x")], "usage": usage(prompt_len, 1)})  # a token-counting call

    return handler


async def test_score_chat_continuation():
    engine, upstream = await started(scoring(5, 8))
    assert await engine.score(Prompt.chat(CHAT.messages, prefix="Th"), "e 4") == [-5.0, -6.0, -7.0]
    full = upstream.bodies("/v1/chat/completions", prompt_logprobs=0)[-1]
    assert full["messages"][-1] == {"role": "assistant", "content": "The 4"}
    assert full["continue_final_message"] is True and full["add_generation_prompt"] is False
    base = next(b for p, b, _ in upstream.requests if p == "/tokenize" and "messages" in b)
    assert base["messages"][-1] == {"role": "assistant", "content": "Th"} and base["continue_final_message"]

    await engine.score(CHAT, "abc")  # no prefix: the base is the prompt with the generation prompt
    base = [b for p, b, _ in upstream.requests if p == "/tokenize" and "messages" in b][-1]
    assert base["messages"] == list(CHAT.messages) and base["add_generation_prompt"] is True
    assert await engine.score(CHAT, "") == []


async def test_score_without_tokenize_counts_with_a_generation_and_scores_raw_text():
    engine, upstream = await started(scoring(3, 5, in_choice=True))
    engine.has_tokenize = False
    assert await engine.score(Prompt.raw("1+1"), "=2") == [-3.0, -4.0]
    counted = [b for b in upstream.bodies("/v1/completions") if "prompt_logprobs" not in b]
    assert counted[0]["prompt"] == "1+1" and counted[0]["max_tokens"] == 1
    assert upstream.bodies("/v1/completions", prompt_logprobs=0)[0]["prompt"] == "1+1=2"


# ---------------------------------------------------------------- in-flight accounting and lifecycle


async def test_in_flight_count_and_cancellation():
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        if request.url.path == "/v1/chat/completions" and not is_probe(body):
            entered.set()
            await release.wait()
            return ok({"choices": [chat_choice(0, "done")], "usage": usage(1, 1)})
        return vllm_like(request.url.path, body)

    engine = OpenAIEngine(URL, client=httpx.AsyncClient(transport=httpx.MockTransport(slow)))
    await engine.start()
    task = asyncio.create_task(engine.generate(CHAT, SamplingParams()))
    await entered.wait()
    assert engine.num_unfinished_requests() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.num_unfinished_requests() == 0


async def test_aclose_closes_only_an_owned_client():
    given = Upstream().client()
    engine = OpenAIEngine(URL, client=given)
    await engine.aclose()
    assert not given.is_closed
    owned = OpenAIEngine(URL)
    await owned.aclose()
    assert owned._client.is_closed

    upstream = Upstream()
    async with await OpenAIEngine.connect(URL + "/v1/", client=upstream.client()) as engine:
        assert engine.started and engine.base_url == URL


async def test_using_an_engine_before_start_is_a_clear_error():
    engine = OpenAIEngine(URL, client=Upstream().client())
    with pytest.raises(RuntimeError, match="start"):
        await engine.generate(CHAT, SamplingParams())
    with pytest.raises(RuntimeError, match="start"):
        await engine.score(CHAT, "x")


async def test_a_soft_token_cap_is_trimmed_to_the_room_the_prompt_leaves():
    def reply(body):
        return ok({"choices": [chat_choice(0, "ok", token_ids=[1])], "usage": usage(3, 1)})

    engine, upstream = await started(on_chat(reply))  # max_model_len 512; /tokenize counts 3 prompt tokens
    await engine.generate(CHAT, SamplingParams(token_cap=65000), n=1)  # a search's budget: beyond the context
    assert "max_tokens" not in upstream.bodies("/v1/chat/completions", n=1)[-1]  # the upstream fills in the room
    await engine.generate(CHAT, SamplingParams(token_cap=510), n=1)
    assert upstream.bodies("/v1/chat/completions", n=1)[-1]["max_tokens"] == 509  # 512 - 3
    await engine.generate(CHAT, SamplingParams(token_cap=100), n=1)
    assert upstream.bodies("/v1/chat/completions", n=1)[-1]["max_tokens"] == 100
    tokenized = [b for p, b, _ in upstream.requests if p == "/tokenize"]
    assert tokenized[-1] == {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    await engine.generate(CHAT, SamplingParams(max_tokens=50, token_cap=20), n=1)
    assert upstream.bodies("/v1/chat/completions", n=1)[-1]["max_tokens"] == 20  # explicit: no counting needed
