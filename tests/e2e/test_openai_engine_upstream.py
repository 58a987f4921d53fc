"""OpenAIEngine against a real vLLM OpenAI server (CPU) serving the tiny random Llama."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time

import httpx
import pytest

from ponder.core.errors import InvalidRequestError, NotFoundError, PromptTooLongError
from ponder.core.protocols import Engine
from ponder.core.types import Prompt, Sample, SamplingParams
from ponder.engines.openai_engine import OpenAIEngine

pytestmark = pytest.mark.e2e
CHAT = Prompt.chat([{"role": "user", "content": "What is 12+7?"}])


@pytest.fixture
async def engine(vllm_upstream: str):
    engine = await OpenAIEngine.connect(f"{vllm_upstream}/v1", timeout=120)
    yield engine
    await engine.aclose()


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over the label sets that match ``labels``."""
    total = 0.0
    for match in re.finditer(
        rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", httpx.get(f"{url}/metrics").text, re.M
    ):
        if all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_start_detects_model_and_capabilities(engine, vllm_upstream, tiny_model_dir):
    assert isinstance(engine, Engine)
    assert engine.model_id == str(tiny_model_dir)
    caps = engine.capabilities
    assert caps.max_model_len == 512
    assert caps.logprobs and caps.prefix_continuation and caps.scoring and caps.seed and caps.penalties
    assert engine.returns_token_ids and engine.has_tokenize
    with pytest.raises(NotFoundError):
        await OpenAIEngine.connect(vllm_upstream, model="no-such-model")


async def test_generate_n3_with_logprobs(engine):
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=7, logprobs=2)
    samples = await engine.generate(CHAT, params, n=3)
    assert len(samples) == 3
    for s in samples:
        assert s.finish_reason in ("stop", "length")
        assert 0 < s.num_tokens <= 12 and (s.finish_reason == "stop" or s.num_tokens == 12)
        assert s.prompt_tokens > 0
        assert len(s.logprobs) == s.num_tokens  # char-level tokenizer: one token per generated piece
        assert all(len(t.top) >= 1 and t.logprob <= 0 for t in s.logprobs)
        assert math.isclose(s.cumulative_logprob, sum(t.logprob for t in s.logprobs))
    assert len({s.text for s in samples}) > 1  # three different samples
    again = await engine.generate(CHAT, params, n=3)
    assert [s.text for s in again] == [s.text for s in samples]  # the seed is honoured


async def test_token_counts_sum_to_the_upstream_usage(engine, vllm_upstream):
    body = {"model": engine.model_id, "messages": list(CHAT.messages), "max_tokens": 30, "n": 4, "seed": 3}
    usage = httpx.post(f"{vllm_upstream}/v1/chat/completions", json=body, timeout=60).json()["usage"]
    samples = await engine.generate(CHAT, SamplingParams(max_tokens=30, seed=3), n=4)
    assert sum(s.num_tokens for s in samples) == usage["completion_tokens"]
    engine.returns_token_ids = False  # the logprob-counting path
    samples = await engine.generate(CHAT, SamplingParams(max_tokens=30, seed=3), n=4)
    assert sum(s.num_tokens for s in samples) == usage["completion_tokens"]


async def test_stream_agrees_with_generate(engine):
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=5)
    samples = await engine.generate(CHAT, params, n=2)
    texts, tokens, finishes = {0: "", 1: ""}, {0: 0, 1: 0}, {}
    async for delta in engine.stream(CHAT, params, n=2):
        assert delta.index not in finishes, "nothing after a sample's finishing delta"
        texts[delta.index] += delta.text
        tokens[delta.index] += delta.num_tokens
        if delta.finish_reason:
            finishes[delta.index] = delta.finish_reason
    assert [texts[0], texts[1]] == [s.text for s in samples]
    assert [tokens[0], tokens[1]] == [s.num_tokens for s in samples]
    assert [finishes[0], finishes[1]] == [s.finish_reason for s in samples]
    assert engine.num_unfinished_requests() == 0


async def plain_sample(engine, max_tokens: int = 24) -> tuple[Sample, int]:
    """A seeded sample whose text is exactly its tokens (the greedy output of the random model is special tokens)."""
    for seed in range(20):
        params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed, logprobs=5)
        [sample] = await engine.generate(CHAT, params)
        tokens = [t.token for t in sample.logprobs]
        if sample.finish_reason == "length" and "".join(tokens) == sample.text and not any("<|" in t for t in tokens):
            return sample, seed
    pytest.skip("no plain-text sample in 20 seeds")


async def test_stop_string(engine):
    sample, seed = await plain_sample(engine)
    text = sample.text
    cut = next((i for i in range(3, len(text)) if text[i] not in text[:i] and text[i].strip()), None)
    if cut is None:
        pytest.skip(f"no usable stop character in {text!r}")
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=seed, stop=(text[cut],))
    [stopped] = await engine.generate(CHAT, params)
    assert stopped.text == text[:cut]
    assert (stopped.finish_reason, stopped.stop_reason) == ("stop", text[cut])
    deltas = [d async for d in engine.stream(CHAT, params)]
    assert "".join(d.text for d in deltas) == text[:cut]
    assert (deltas[-1].finish_reason, deltas[-1].stop_reason) == ("stop", text[cut])


def best(top: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    return max(top, key=lambda item: item[1])


async def test_prefix_continuation_continues_the_assistant_turn(engine):
    sample, _ = await plain_sample(engine)
    prefix = sample.text[:8]
    params = SamplingParams(max_tokens=4, temperature=1.0, seed=1, logprobs=5)
    [rest] = await engine.generate(Prompt.chat(CHAT.messages, prefix=prefix), params)
    assert rest.prompt_tokens == sample.prompt_tokens + 8  # the turn is continued, not closed and reopened
    # The model sees the same context as when it generated token 9: the same distribution there.
    token, logprob = best(rest.logprobs[0].top)
    assert token == best(sample.logprobs[8].top)[0]
    assert logprob == pytest.approx(best(sample.logprobs[8].top)[1], abs=1e-3)
    streamed = [d async for d in engine.stream(Prompt.chat(CHAT.messages, prefix=prefix), params)]
    assert "".join(d.text for d in streamed) == rest.text


async def test_score_matches_the_generation_logprobs(engine):
    sample, _ = await plain_sample(engine, max_tokens=20)
    scores = await engine.score(CHAT, sample.text)
    assert scores == pytest.approx([t.logprob for t in sample.logprobs], abs=1e-3)
    tail = await engine.score(Prompt.chat(CHAT.messages, prefix=sample.text[:6]), sample.text[6:])
    assert tail == pytest.approx(scores[6:], abs=1e-4)
    raw = await engine.score(Prompt.raw("12+7="), "19")
    assert len(raw) == 2 and all(v <= 0 for v in raw)


async def test_raw_prompt_generation(engine):
    samples = await engine.generate(Prompt.raw("12+7="), SamplingParams(max_tokens=5, seed=1, logprobs=1), n=2)
    assert len(samples) == 2
    assert all(s.num_tokens == len(s.logprobs) and s.prompt_tokens == 5 for s in samples)


async def test_upstream_errors_are_mapped(engine):
    with pytest.raises(PromptTooLongError) as info:
        await engine.generate(CHAT, SamplingParams(max_tokens=600))
    assert "512" in info.value.message and info.value.status == 400
    with pytest.raises(PromptTooLongError):
        await engine.generate(Prompt.chat([{"role": "user", "content": "a" * 600}]), SamplingParams(max_tokens=4))
    with pytest.raises(InvalidRequestError) as info:
        await engine.generate(CHAT, SamplingParams(max_tokens=4, temperature=-1.0))
    assert "temperature" in info.value.message
    with pytest.raises(InvalidRequestError):
        async for _ in engine.stream(CHAT, SamplingParams(max_tokens=600)):
            pass
    assert engine.num_unfinished_requests() == 0


MAX_TOKENS = 480


async def long_greedy_prompt(engine) -> tuple[Prompt, float]:
    """A prompt whose greedy output runs the full 480 tokens (the random model never ends its turn), and how long."""
    for question in ("What is 12+7?", "hi", "Count to ten", "abc"):
        prompt = Prompt.chat([{"role": "user", "content": question}])
        started = time.monotonic()
        [sample] = await engine.generate(prompt, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0))
        if sample.finish_reason == "length":
            return prompt, time.monotonic() - started
    pytest.skip("every greedy output ended early")


def counters(url: str) -> tuple[float, float]:
    """(requests the upstream finished, tokens it generated); an aborted request is not counted as finished."""
    return metric(url, "vllm:request_success_total"), metric(url, "vllm:generation_tokens_total")


async def check_abort(url: str, before: tuple[float, float], broke_early: bool) -> bool:
    """Whether the request was cut off mid-way; fails if it ran to its end although the test broke off in time.

    On 2 shared cores the upstream's API process can be starved while the engine generates, so that it
    delivers the first delta, or notices the disconnect, only once the generation is over. Such an attempt
    proves nothing and is retried: it counts only if the client broke off early and the upstream answered
    /metrics promptly right after.
    """
    probe = time.monotonic()
    metric(url, "vllm:num_requests_running")
    latency = time.monotonic() - probe
    responsive = latency < 0.3
    assert await wait_for(lambda: metric(url, "vllm:num_requests_running") == 0, timeout=10)
    await asyncio.sleep(1.0)  # longer than the rest of the generation would have taken
    finished, generated = (now - then for now, then in zip(counters(url), before, strict=True))
    if finished == 0:
        return generated > 0  # cut off mid-way (or, if it generated nothing, never started: inconclusive)
    if broke_early and responsive:
        pytest.fail(
            f"the upstream request ran to its end: {finished} finished, {generated} tokens generated "
            f"(/metrics answered in {latency:.2f}s after the break)"
        )
    return False


ATTEMPTS = 5


async def test_breaking_out_of_a_stream_aborts_the_upstream_request(engine, vllm_upstream):
    prompt, duration = await long_greedy_prompt(engine)
    for _attempt in range(ATTEMPTS):
        before = counters(vllm_upstream)
        started = time.monotonic()
        stream = engine.stream(prompt, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0))
        async with contextlib.aclosing(stream) as deltas:
            async for _delta in deltas:
                assert engine.num_unfinished_requests() == 1
                break
        broke_early = time.monotonic() - started < duration / 4
        assert engine.num_unfinished_requests() == 0
        if await check_abort(vllm_upstream, before, broke_early):
            return
    pytest.skip(f"the upstream was too starved to break off in time, {ATTEMPTS} times")


async def test_cancelling_generate_closes_the_upstream_request(engine, vllm_upstream):
    """Cancelling ``generate`` closes its connection and leaves nothing in flight.

    Whether the upstream then aborts is the upstream's business: vLLM 0.32 usually aborts a non-streamed
    request on disconnect, but not always (seen: 5 of 16 ran to their end), so that is not asserted here;
    nor is the cancel guaranteed to land before the end on a loaded machine (the request may just finish).
    """
    prompt, _duration = await long_greedy_prompt(engine)
    task = asyncio.create_task(engine.generate(prompt, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)))
    assert await wait_for(lambda: task.done() or engine.num_unfinished_requests() == 1, timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert engine.num_unfinished_requests() == 0
    assert await wait_for(lambda: metric(vllm_upstream, "vllm:num_requests_running") == 0, timeout=10)
