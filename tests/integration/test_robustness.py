"""Bad input is a 400 naming the field, never a 500; limits, cancels and rejections are counted."""

from __future__ import annotations

import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import Limits, ServerSettings
from ponder.testing import FakeEngine
from tests.helpers import client, fake_app

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
