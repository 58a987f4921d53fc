"""The vLLM engine over a real in-process ``AsyncLLM`` (CPU build) serving a random tiny Llama.

One engine for the module (start ~20 s on 2 cores); the tests share its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_asyncio

from ponder.core.errors import EngineError, InvalidRequestError, PromptTooLongError
from ponder.core.protocols import Engine
from ponder.core.types import Prompt, SamplingParams
from ponder.engines.base import render_chat

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_MODEL_LEN = 512
ROOT = Path(__file__).resolve().parents[2]
CHAT = Prompt.chat([{"role": "user", "content": "What is 12 + 30?"}])
# 16 samples of this take about a second on 2 idle cores (the random model rarely samples its EOS).
LONG = SamplingParams(max_tokens=480, temperature=1.0, seed=0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny_model_dir):
    pytest.importorskip("vllm")
    from ponder.engines.vllm_engine import VLLMEngine

    # ``create`` is how the server's lifespan starts it: inside the running loop that will use it.
    eng = await VLLMEngine.create(str(tiny_model_dir), served_model_name="tiny", max_model_len=MAX_MODEL_LEN)
    try:
        yield eng
    finally:
        await eng.aclose()


async def wait_idle(engine, seconds: float = 5.0) -> int:
    """Unfinished requests once they drop to 0, or whatever is left after ``seconds``."""
    deadline = time.monotonic() + seconds
    while engine.num_unfinished_requests() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return engine.num_unfinished_requests()


async def test_module_imports_without_vllm():
    code = (
        "import sys; sys.modules['vllm'] = None; sys.modules['torch'] = None\n"
        "import ponder.engines.vllm_engine as m; assert m.VLLMEngine"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


async def test_builds_with_capabilities(engine):
    assert isinstance(engine, Engine)
    assert engine.model_id == "tiny"
    caps = engine.capabilities
    assert caps.max_model_len == MAX_MODEL_LEN
    assert caps.logprobs and caps.prefix_continuation and caps.scoring and caps.seed and caps.penalties
    assert caps.max_top_logprobs == 20
    assert engine.block_size % 32 == 0  # the CPU attention kernels need multiples of 32


async def test_n_samples_in_one_call(engine):
    samples = await engine.generate(CHAT, SamplingParams(max_tokens=16, temperature=1.0), n=3)
    prompt_len = len(engine.tokenizer.encode(render_chat(engine.tokenizer, CHAT), add_special_tokens=False))
    assert len(samples) == 3
    for s in samples:
        assert 1 <= s.num_tokens <= 16
        assert s.finish_reason in ("stop", "length")
        assert s.prompt_tokens == prompt_len > 0
        assert s.logprobs is None
    assert await wait_idle(engine) == 0


async def test_seed_makes_samples_reproducible(engine):
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=1234)
    first = await engine.generate(CHAT, params, n=2)
    second = await engine.generate(CHAT, params, n=2)
    assert [s.text for s in first] == [s.text for s in second]
    assert first[0].text != first[1].text  # each of the n samples gets its own seed (seed + index)
    other = await engine.generate(CHAT, SamplingParams(max_tokens=24, temperature=1.0, seed=4321), n=1)
    assert other[0].text != first[0].text


async def test_many_seeded_requests_with_long_prompts_keep_the_engine_alive(engine):
    # Enough prompt tokens at once that chunked prefill would split one; with a seed that used to kill
    # the CPU engine core ("CPU Generator does not use offset").
    question = "What is " + " + ".join(str(100 + i) for i in range(30)) + "?"

    async def one(i: int):
        prompt = Prompt.chat([{"role": "user", "content": f"{question} {i}"}])
        return await engine.generate(prompt, SamplingParams(max_tokens=4, temperature=1.0, seed=i), n=2)

    results = await asyncio.gather(*(one(i) for i in range(24)))
    assert sum(r[0].prompt_tokens for r in results) > 4096
    assert all(len(r) == 2 for r in results)


async def test_concurrent_calls(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0)
    results = await asyncio.gather(*(engine.generate(CHAT, params, n=2) for _ in range(4)))
    assert [len(r) for r in results] == [2, 2, 2, 2]


async def test_max_tokens_ends_with_length(engine):
    (s,) = await engine.generate(CHAT, SamplingParams(max_tokens=5, temperature=0.0))
    assert s.finish_reason == "length"
    assert s.num_tokens == 5
    assert s.stop_reason is None


async def sampled_text(engine, min_chars: int) -> tuple[str, int]:
    """A seeded sample (the random model's greedy choice is a special token, i.e. empty text) and its seed."""
    for seed in range(100, 120):
        (s,) = await engine.generate(CHAT, SamplingParams(max_tokens=16, temperature=1.0, seed=seed))
        if len(s.text) >= min_chars:
            return s.text, seed
    raise AssertionError("no seeded sample had any text")


async def test_stop_string_cuts_text(engine):
    text, seed = await sampled_text(engine, min_chars=6)
    stop = text[3:5]
    cut = text.find(stop)
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=seed, stop=("never-seen", stop))
    (s,) = await engine.generate(CHAT, params)
    assert s.text == text[:cut]
    assert s.finish_reason == "stop"
    assert s.stop_reason == stop
    assert s.num_tokens >= cut + 1  # the tokens that spelled the stop string were generated, then cut


async def test_logprobs_with_top_k(engine):
    (g,) = await engine.generate(CHAT, SamplingParams(max_tokens=4, temperature=0.0, logprobs=3))
    assert g.logprobs is not None and len(g.logprobs) == g.num_tokens == 4
    for tok in g.logprobs:
        assert tok.top[0] == (tok.token, pytest.approx(tok.logprob))  # greedy: the chosen token ranks first

    (s,) = await engine.generate(CHAT, SamplingParams(max_tokens=12, temperature=1.0, seed=11, logprobs=3))
    assert s.logprobs is not None and len(s.logprobs) == s.num_tokens
    for tok in s.logprobs:
        assert tok.logprob <= 0
        assert len(tok.top) == 3
        values = [lp for _, lp in tok.top]
        assert values == sorted(values, reverse=True)
        assert tok.logprob <= values[0] + 1e-6
    special = set(engine.tokenizer.all_special_tokens)
    assert "".join(t.token for t in s.logprobs if t.token not in special) == s.text
    assert s.cumulative_logprob == pytest.approx(sum(t.logprob for t in s.logprobs), abs=1e-4)
    with pytest.raises(InvalidRequestError):
        await engine.generate(CHAT, SamplingParams(max_tokens=2, logprobs=21))


async def test_greedy_n_gives_n_identical_samples_as_openai_does(engine):
    """vLLM's sampler refuses n > 1 at temperature 0; the engine decodes once and copies, streamed or not."""
    params = SamplingParams(max_tokens=12, temperature=0.0)
    samples = await engine.generate(CHAT, params, n=3)
    assert len(samples) == 3 and len({s.text for s in samples}) == 1 and samples[0].num_tokens > 0
    streamed: dict[int, str] = {0: "", 1: "", 2: ""}
    async for delta in engine.stream(CHAT, params, n=3):
        streamed[delta.index] += delta.text
    assert set(streamed.values()) == {samples[0].text}
    assert await wait_idle(engine) == 0


async def test_a_deadline_ends_generation_with_what_was_generated(engine):
    """A search's time budget: vLLM aborts the request at its deadline and returns each sample's text so far."""
    params = dataclasses.replace(LONG, deadline=time.monotonic() + 0.3)
    started = time.monotonic()
    samples = await engine.generate(CHAT, params, n=2)
    assert time.monotonic() - started < 1.5
    assert [s.finish_reason for s in samples] == ["abort", "abort"]
    assert all(0 < s.num_tokens < 480 for s in samples) and all(s.text for s in samples)
    assert await wait_idle(engine) == 0


async def test_prompt_logprobs_and_token_id_prompts(engine):
    """echo with logprobs (lm-eval's loglikelihood): every prompt token's logprob, the first none; token ids in."""
    ids = engine.tokenizer.encode("What is 12 + 30?", add_special_tokens=False)
    params = SamplingParams(max_tokens=2, temperature=0.0, logprobs=1, prompt_logprobs=1)
    [sample] = await engine.generate(Prompt.tokens(ids), params)
    assert sample.prompt_tokens == len(ids) and len(sample.prompt_logprobs) == len(ids)
    assert sample.prompt_logprobs[0].logprob is None
    assert all(t.logprob is not None and t.logprob <= 0 and len(t.top) == 1 for t in sample.prompt_logprobs[1:])
    assert "".join(t.token for t in sample.prompt_logprobs) == engine.decode(ids)
    firsts = [d.prompt_logprobs async for d in engine.stream(Prompt.tokens(ids), params) if d.prompt_logprobs]
    assert [[t.logprob for t in f] for f in firsts] == [[t.logprob for t in sample.prompt_logprobs]]
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        await engine.generate(Prompt.tokens([len(engine.tokenizer) + 5]), params)
    assert await wait_idle(engine) == 0


async def test_stream_matches_generate(engine):
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=7, logprobs=1)
    expected = await engine.generate(CHAT, params, n=2)
    texts = {0: "", 1: ""}
    tokens = {0: 0, 1: 0}
    finishes: dict[int, list[str]] = {0: [], 1: []}
    async for delta in engine.stream(CHAT, params, n=2):
        assert delta.prompt_tokens == expected[0].prompt_tokens
        assert not finishes[delta.index], "a delta after the finishing one"
        texts[delta.index] += delta.text
        tokens[delta.index] += delta.num_tokens
        assert delta.logprobs is not None and len(delta.logprobs) == delta.num_tokens
        if delta.finish_reason:
            finishes[delta.index].append(delta.finish_reason)
    assert texts == {0: expected[0].text, 1: expected[1].text}
    assert tokens == {0: expected[0].num_tokens, 1: expected[1].num_tokens}
    assert finishes == {0: [expected[0].finish_reason], 1: [expected[1].finish_reason]}
    assert await wait_idle(engine) == 0


async def test_prefix_continuation(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=3)
    (plain,) = await engine.generate(CHAT, params)
    (cont,) = await engine.generate(Prompt.chat(CHAT.messages, prefix="<think>1"), params)
    assert cont.num_tokens >= 1
    # "<think>" is one added token, "1" one character; the template's "<|assistant|>" opener is shared.
    assert cont.prompt_tokens == plain.prompt_tokens + 2


async def test_raw_prompt(engine):
    (s,) = await engine.generate(Prompt.raw("12+30="), SamplingParams(max_tokens=4, temperature=0.0))
    assert s.prompt_tokens == 6
    assert s.num_tokens == 4


async def test_score(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=21, logprobs=0)
    samples = await engine.generate(CHAT, params, n=4)
    special = set(engine.tokenizer.all_special_tokens)
    clean = [s for s in samples if s.num_tokens == 8 and not any(t.token in special for t in s.logprobs)]
    assert clean, samples
    s = clean[0]
    scores = await engine.score(CHAT, s.text)
    assert len(scores) == len(engine.tokenizer.encode(s.text, add_special_tokens=False)) == 8
    assert all(x <= 0 for x in scores)
    # Scoring a sampled continuation gives back the (raw) logprobs it was sampled with.
    assert scores == pytest.approx([t.logprob for t in s.logprobs], abs=1e-3)
    # The prompt/continuation boundary is exact: moving a token into the prefix does not change its score.
    ab = await engine.score(CHAT, "ab")
    b = await engine.score(CHAT.continued("a"), "b")
    assert b == pytest.approx(ab[1:], abs=1e-4)
    assert await engine.score(CHAT, "") == []
    assert len(await engine.score(Prompt.raw("12+30="), "42")) == 2


async def test_too_long_prompts_are_refused(engine):
    too_long = Prompt.raw("1" * (MAX_MODEL_LEN + 10))
    with pytest.raises(PromptTooLongError):
        await engine.generate(too_long, SamplingParams(max_tokens=4))
    with pytest.raises(PromptTooLongError):
        await engine.generate(CHAT, SamplingParams(max_tokens=MAX_MODEL_LEN))
    with pytest.raises(PromptTooLongError):
        async for _ in engine.stream(too_long, SamplingParams(max_tokens=4)):
            pass
    with pytest.raises(PromptTooLongError):
        await engine.score(Prompt.raw("1" * 300), "2" * 300)
    with pytest.raises(PromptTooLongError):  # long enough to be tokenized in a worker thread
        await engine.generate(Prompt.raw("1" * 9000), SamplingParams(max_tokens=4))
    with pytest.raises(InvalidRequestError):
        await engine.generate(Prompt.raw(""), SamplingParams(max_tokens=4))
    with pytest.raises(InvalidRequestError):
        await engine.generate(CHAT, SamplingParams(max_tokens=4, top_p=0.0))
    assert engine.num_unfinished_requests() == 0


async def test_penalties(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=5, presence_penalty=1.5, frequency_penalty=-0.5)
    (s,) = await engine.generate(CHAT, params)
    assert s.num_tokens >= 1
    with pytest.raises(InvalidRequestError):
        await engine.generate(CHAT, SamplingParams(max_tokens=4, presence_penalty=3.0))


async def test_cancelling_generate_aborts(engine):
    task = asyncio.create_task(engine.generate(CHAT, LONG, n=16))
    deadline = time.monotonic() + 10
    while engine.num_unfinished_requests() == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert not task.done()
    assert engine.num_unfinished_requests() > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.num_unfinished_requests() == 0
    (s,) = await engine.generate(CHAT, SamplingParams(max_tokens=3, temperature=0.0))  # still serving
    assert s.num_tokens == 3


async def test_closing_stream_aborts(engine):
    agen = engine.stream(CHAT, LONG, n=16)
    for _ in range(3):
        await agen.__anext__()
    assert engine.num_unfinished_requests() > 0
    await agen.aclose()
    assert engine.num_unfinished_requests() == 0


async def test_breaking_out_of_stream_aborts(engine):
    async with contextlib.aclosing(engine.stream(CHAT, LONG, n=16)) as deltas:
        async for i, _ in _enumerate(deltas):
            if i == 2:
                break
    assert engine.num_unfinished_requests() == 0
    # A bare ``async for`` + ``break``: the iterator is finalised by the loop shortly after.
    count = 0
    async for _ in engine.stream(CHAT, LONG, n=16):
        count += 1
        if count == 3:
            break
    assert await wait_idle(engine) == 0


async def _enumerate(aiter):
    i = 0
    async for item in aiter:
        yield i, item
        i += 1


async def test_prefix_cache_hits_whole_blocks(engine):
    before = engine.prefix_cache_stats()
    prompt = Prompt.raw("".join(str(i % 10) for i in range(300)))  # 300 tokens
    params = SamplingParams(max_tokens=1, temperature=0.0)
    (first,) = await engine.generate(prompt, params)
    (second,) = await engine.generate(prompt, params)
    block = engine.block_size
    assert second.cached_tokens == (300 - 1) // block * block  # full blocks only, the last token recomputed
    assert second.cached_tokens > first.cached_tokens
    after = engine.prefix_cache_stats()
    assert after["queries"] - before["queries"] >= 600
    assert after["hits"] - before["hits"] >= second.cached_tokens
    assert 0.0 <= after["hit_rate"] <= 1.0


async def test_translate_errors():
    pytest.importorskip("vllm")
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    from ponder.engines.vllm_engine import VLLMEngine

    long_prompt = "The decoder prompt (length 9) is longer than the maximum model length of 8."
    err = VLLMEngine._translate(VLLMValidationError(long_prompt))
    assert isinstance(err, PromptTooLongError)
    assert isinstance(VLLMEngine._translate(VLLMValidationError("bad", parameter="top_p")), InvalidRequestError)
    dead = VLLMEngine._translate(EngineDeadError())
    assert type(dead) is EngineError and "died" in dead.message
    assert type(VLLMEngine._translate(EngineGenerateError())) is EngineError
    assert type(VLLMEngine._translate(RuntimeError("boom"))) is EngineError


async def test_cpu_block_size_must_be_a_multiple_of_32():
    pytest.importorskip("vllm")
    from ponder.engines.vllm_engine import VLLMEngine, _on_cpu

    if not _on_cpu():
        pytest.skip("a CPU-build restriction")
    with pytest.raises(ValueError, match="multiple of 32"):
        VLLMEngine.from_args("never-loaded", block_size=16)
