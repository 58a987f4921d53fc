"""Bad input is a 400 naming the field, never a 500; limits, cancels and rejections are counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import httpx
import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import Limits, ServerSettings
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app, live, wait_until

MODEL = "fake-model"
HI = '[{"role": "user", "content": "hi"}]'
# Raw JSON bodies: a lone surrogate can only be sent as a JSON escape (it is not valid UTF-8).
SURROGATE_BODIES = [
    ("/v1/chat/completions", '{"model": "fake-model", "messages": [{"role": "user", "content": "a\\ud800"}]}',
     "messages.0.content"),
    ("/v1/chat/completions",
     '{"model": "fake-model", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
     "messages.0.content.0.text"),
    ("/v1/chat/completions", '{"model": "\\ud800", "messages": ' + HI + "}", "model"),
    ("/v1/chat/completions", '{"model": "fake-model", "strategy": "\\ud800", "messages": ' + HI + "}", "strategy"),
    ("/v1/chat/completions", '{"model": "fake-model", "verifier": "\\ud800", "messages": ' + HI + "}", "verifier"),
    ("/v1/chat/completions", '{"model": "fake-model", "stop": "x\\ud800", "messages": ' + HI + "}", "stop"),
    ("/v1/chat/completions", '{"model": "fake-model", "stop": ["ok", "\\ud800"], "messages": ' + HI + "}", "stop.1"),
    ("/v1/completions", '{"model": "fake-model", "prompt": "\\ud800"}', "prompt"),
    ("/v1/completions", '{"model": "fake-model", "prompt": ["fine", "\\ud800"]}', "prompt.1"),
]  # fmt: skip


def assert_error(resp, status: int, param: str | None, contains: str = "") -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == status and err["param"] == param, err
    assert contains.lower() in err["message"].lower(), err
    return err


@pytest.mark.parametrize(("path", "raw", "param"), SURROGATE_BODIES)
async def test_a_lone_surrogate_is_a_400_naming_the_field(path, raw, param):
    app, engine = fake_app()
    async with client(app) as c:
        resp = await c.post(path, content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 400, param, "surrogate")
    assert not engine.calls


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
async def test_a_seed_outside_the_engines_range_is_a_400(seed):
    app, engine = fake_app()
    async with client(app) as c:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": seed}
        assert_error(await c.post("/v1/chat/completions", json=body), 400, "seed")
        body = {"model": MODEL, "prompt": "hi", "seed": seed}
        assert_error(await c.post("/v1/completions", json=body), 400, "seed")
    assert not engine.calls


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63), 0])
async def test_seeds_at_the_ends_of_the_range_are_accepted(seed):
    app, engine = fake_app()
    async with client(app) as c:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": seed}
        assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
    assert engine.calls[0][1].seed == seed


# ---- /health, prompt counts, prompt sizes ----


async def test_health_answers_json():
    app, _ = fake_app()
    async with client(app) as c:
        resp = await c.get("/health")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.json() == {"status": "ok"}


async def test_too_many_prompts_in_one_completions_request_is_a_400():
    app, engine = fake_app(settings=ServerSettings(limits=Limits(max_prompts=4)))
    async with client(app) as c:
        assert (await c.post("/v1/completions", json={"model": MODEL, "prompt": ["a"] * 4})).status_code == 200
        resp = await c.post("/v1/completions", json={"model": MODEL, "prompt": ["a"] * 5})
    assert_error(resp, 400, "prompt", "at most 4 prompts")
    assert len(engine.calls) == 4


def test_the_default_prompt_limit_takes_a_benchmark_batch_not_ten_thousand():
    assert 64 <= Limits().max_prompts < 10_000


class Untokenizable(FakeEngine):
    """A fake engine that fails the test if asked to render or tokenize a prompt."""

    def _prompt_tokens(self, prompt):
        raise AssertionError("the prompt was tokenized")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}]}, "messages"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "system", "content": "y" * 2000}, {"role": "user", "content": "x" * 3000}]},
            "messages",
        ),
        ("/v1/completions", {"prompt": ["short", "x" * 4097]}, "prompt"),
    ],
)
async def test_a_prompt_too_long_to_fit_is_refused_before_it_is_tokenized(path, body, param):
    caps = EngineCapabilities(max_model_len=512, max_prompt_chars=4096)
    app, engine = fake_app(Untokenizable(capabilities=caps))
    async with client(app) as c:
        resp = await c.post(path, json={"model": MODEL, **body})
    assert_error(resp, 400, param, "maximum context length is 512 tokens")
    assert not engine.calls


def test_the_character_bound_comes_from_the_longest_token(tiny_model_dir):
    from transformers import AutoTokenizer

    from ponder.engines.base import max_prompt_chars

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    longest = max(len(token) for token in tokenizer.get_vocab())
    assert max_prompt_chars(tokenizer, 512) == 512 * longest
    text = "a b c " * 2000
    assert len(tokenizer(text)["input_ids"]) * longest >= len(text)  # no prompt that fits is refused


# ---- every request is counted in ponder_requests_total with its status ----


class Slow(FakeEngine):
    """Waits ``first_delay`` seconds before its first token, then answers slowly."""

    def __init__(self, first_delay: float) -> None:
        super().__init__(lambda p, s, i: "tok " * 2000, token_delay=0.002)
        self.first_delay = first_delay

    async def stream(self, prompt, params, n=1):
        self.active += 1
        try:
            await asyncio.sleep(self.first_delay)
        finally:
            self.active -= 1
        async for delta in super().stream(prompt, params, n):
            yield delta


def requests_total(metrics: str, status: int) -> float:
    pattern = rf'ponder_requests_total\{{route="/v1/chat/completions",status="{status}",[^}}]*\}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("stream", [True, False])
async def test_a_request_cancelled_before_its_first_token_counts_as_499(stream):
    app, engine = fake_app(Slow(first_delay=30))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": stream}
    async with live(app) as url, httpx.AsyncClient(base_url=url) as http:
        request = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        assert await wait_until(lambda: engine.active == 1)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        assert await wait_until(lambda: app.state.admission.in_flight == 0 and engine.active == 0)
        metrics = (await http.get("/metrics")).text
    assert requests_total(metrics, 499) == 1.0 and requests_total(metrics, 500) == 0.0, metrics
    assert 'ponder_requests_cancelled_total{route="/v1/chat/completions"} 1.0' in metrics


async def test_a_request_refused_past_max_concurrency_counts_as_503():
    app, engine = fake_app(Slow(first_delay=0.3), ServerSettings(limits=Limits(max_concurrency=1)))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 2}
    async with client(app) as c:
        first = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        await wait_until(lambda: engine.active == 1)
        refused = await c.post("/v1/chat/completions", json=body)
        assert (await first).status_code == 200
        metrics = (await c.get("/metrics")).text
    assert refused.status_code == 503
    assert requests_total(metrics, 503) == 1.0 and requests_total(metrics, 200) == 1.0
    assert 'status="503",strategy="none"' in metrics


async def test_a_client_gone_as_the_stream_starts_is_counted_and_frees_its_slot():
    """The client leaves while the response's first bytes are being sent, before any event: the request still
    leaves --max-concurrency, its engine work is closed and it counts as a 499."""
    app, engine = fake_app(FakeEngine(lambda p, s, i: "tok " * 200, token_delay=0.01))
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True}).encode()
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    gone = asyncio.Event()

    async def receive():
        if incoming:
            return incoming.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            gone.set()  # the client leaves just as the response starts
            await asyncio.sleep(0.05)

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}  # fmt: skip
    await app(scope, receive, send)
    assert app.state.admission.in_flight == 0 and engine.active == 0
    metrics = app.state.metrics.render().decode()
    assert requests_total(metrics, 499) == 1.0


# ---- a time budget cuts every strategy to its best partial answer ----

STRATEGIES = ["best_of_n", "self_consistency", "compute_optimal", "beam_search", "dvts", "mcts", "tree_of_thoughts",
              "self_refine", "none"]  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_search_cut_by_max_seconds_answers_its_best_partial_answer(strategy):
    from ponder.testing import RulePRM, TableVerifier
    from ponder.verifiers.registry import VerifierSet

    verifiers = VerifierSet([TableVerifier({}, default=0.5, name="orm"), RulePRM(name="prm")], default="prm")
    steps = ("thinking " * 40 + "\n") * 40  # 40 steps of 40 tokens: ~8 s an answer
    slow = FakeEngine(lambda p, s, i: ("" if p.prefix else "<think>") + steps, token_delay=0.005)
    app, engine = fake_app(slow, verifiers=verifiers)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "2+3?"}], "strategy": strategy,
            "budget": {"max_seconds": 0.8, "max_samples": 4}, "return_trace": True}  # fmt: skip
    started = asyncio.get_running_loop().time()
    async with client(app) as c:
        resp = await c.post("/v1/chat/completions", json=body)
    elapsed = asyncio.get_running_loop().time() - started
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["ponder"]["exhausted"] == "max_seconds"
    assert data["ponder"]["spent"]["seconds"] < 1.5 and elapsed < 10  # 0.8 s, and slack for a loaded machine
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length"
    assert (choice["message"]["reasoning_content"] or "").startswith("thinking")  # what was generated by then
    assert data["usage"]["completion_tokens"] > 0 and engine.active == 0
