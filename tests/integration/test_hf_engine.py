"""HFEngine over the tiny random Llama on CPU: sampling, stops, logprobs, streaming, scoring, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from ponder.core.errors import EngineError, InvalidRequestError, PromptTooLongError
from ponder.core.protocols import Engine
from ponder.core.types import Prompt, Sample, SamplingParams

pytest.importorskip("torch")

CHAT = Prompt.chat([{"role": "user", "content": "What is 2+3?"}])
RAW = Prompt.raw("hello world")
GREEDY = SamplingParams(temperature=0, max_tokens=16)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import torch

    from ponder.engines.hf_engine import HFEngine

    # A model this small is dominated by thread hand-offs: one intra-op thread is several times faster,
    # and much more so on the shared cores of CI.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = HFEngine(str(tiny_model_dir), served_model_name="tiny", seed=0)
    yield engine
    asyncio.run(engine.aclose())
    torch.set_num_threads(threads)


async def wait_idle(engine, timeout: float = 1.0) -> float:
    """Seconds until the engine has nothing running (fails past ``timeout``)."""
    start = time.perf_counter()
    while engine.num_unfinished_requests() and time.perf_counter() - start < timeout:
        await asyncio.sleep(0.01)
    assert engine.num_unfinished_requests() == 0
    return time.perf_counter() - start


async def collect(engine, prompt, params, n=1):
    """A stream's deltas, and per index: text, token count, finishing deltas."""
    deltas = [d async for d in engine.stream(prompt, params, n)]
    texts = ["".join(d.text for d in deltas if d.index == i) for i in range(n)]
    tokens = [sum(d.num_tokens for d in deltas if d.index == i) for i in range(n)]
    finishes = [[d for d in deltas if d.index == i and d.finish_reason] for i in range(n)]
    return deltas, texts, tokens, finishes


def visible(engine, sample: Sample) -> str:
    """A sample's text as its logprob tokens spell it, special tokens left out."""
    specials = set(engine.tokenizer.all_special_tokens)
    return "".join(lp.token for lp in sample.logprobs or () if lp.token not in specials)


def test_protocol_and_capabilities(engine):
    assert isinstance(engine, Engine)
    assert engine.model_id == "tiny"
    caps = engine.capabilities
    assert caps.max_model_len == 1024  # config.max_position_embeddings
    assert caps.logprobs and caps.scoring and caps.prefix_continuation and caps.seed and caps.penalties
    assert caps.max_top_logprobs == 20
    assert engine.num_unfinished_requests() == 0


async def test_n_samples_at_temperature_one(engine):
    samples = await engine.generate(CHAT, SamplingParams(temperature=1.0, max_tokens=24, seed=1), n=3)
    assert len(samples) == 3
    assert all(isinstance(s, Sample) for s in samples)
    assert len({s.text for s in samples}) == 3
    for s in samples:
        assert s.finish_reason in ("stop", "length")
        assert 0 < s.num_tokens <= 24
        assert s.prompt_tokens == 1 + len("What is 2+3?") + 2  # <|user|>, chars, <|end|>, <|assistant|>
        assert s.logprobs is None and s.cumulative_logprob is None


async def test_seed_reproducible_and_unseeded_varies(engine):
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=1234)
    first = [s.text for s in await engine.generate(CHAT, params, n=2)]
    again = [s.text for s in await engine.generate(CHAT, params, n=2)]
    other = [s.text for s in await engine.generate(CHAT, SamplingParams(temperature=1.0, max_tokens=24, seed=99), n=2)]
    assert first == again
    assert first != other
    unseeded = SamplingParams(temperature=1.0, max_tokens=24)
    a = (await engine.generate(CHAT, unseeded))[0].text
    b = (await engine.generate(CHAT, unseeded))[0].text
    assert a != b


async def test_seeded_requests_are_reproducible_when_concurrent(engine):
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=7)
    alone = await engine.generate(RAW, params, n=2)
    together = await asyncio.gather(*(engine.generate(RAW, params, n=2) for _ in range(3)))
    assert all([s.text for s in r] == [s.text for s in alone] for r in together)


async def test_greedy_is_deterministic_and_n_copies(engine):
    one = await engine.generate(RAW, GREEDY)
    three = await engine.generate(RAW, GREEDY, n=3)
    assert [s.text for s in three] == [one[0].text] * 3
    assert [s.num_tokens for s in three] == [one[0].num_tokens] * 3 == [16] * 3


async def test_max_tokens_gives_length_with_exactly_that_many_tokens(engine):
    for max_tokens in (1, 7):
        [s] = await engine.generate(RAW, SamplingParams(temperature=0, max_tokens=max_tokens, logprobs=0))
        assert s.finish_reason == "length"
        assert s.num_tokens == max_tokens
        assert s.logprobs is not None and len(s.logprobs) == max_tokens
        assert s.text == visible(engine, s)
        assert s.stop_reason is None
        assert s.prompt_tokens == len("hello world")


async def test_stop_string_cuts_text(engine):
    for seed in range(5, 50):  # a sampled output with a few characters to cut at
        [full] = await engine.generate(RAW, SamplingParams(temperature=1.0, max_tokens=24, seed=seed))
        if len(full.text) >= 6:
            break
    stop = full.text[2]
    cut = full.text[: full.text.index(stop)]
    [s] = await engine.generate(RAW, SamplingParams(temperature=1.0, max_tokens=24, seed=seed, stop=(stop, "never")))
    assert s.text == cut
    assert s.finish_reason == "stop"
    assert s.stop_reason == stop
    assert s.num_tokens < full.num_tokens
    # a two-character stop string is held back while streaming, never emitted
    stop2 = full.text[3:5]
    params2 = SamplingParams(temperature=1.0, max_tokens=24, seed=seed, stop=(stop2,))
    [g] = await engine.generate(RAW, params2)
    assert g.text == full.text[: full.text.index(stop2)] and g.stop_reason == stop2
    deltas, texts, tokens, finishes = await collect(engine, RAW, params2)
    assert texts == [g.text]
    assert tokens == [g.num_tokens]
    assert [(f.finish_reason, f.stop_reason) for f in finishes[0]] == [("stop", stop2)]
    assert all(stop2 not in "".join(d.text for d in deltas[: i + 1]) for i in range(len(deltas)))


async def test_logprobs_top_k_and_match_score(engine):
    params = SamplingParams(temperature=0, max_tokens=12, logprobs=5)
    [s] = await engine.generate(RAW, params)
    assert s.logprobs is not None and len(s.logprobs) == s.num_tokens == 12
    for lp in s.logprobs:
        assert lp.logprob <= 0
        assert len(lp.top) == 5
        values = [v for _, v in lp.top]
        assert all(v <= 0 for v in values)
        assert values == sorted(values, reverse=True)
        # greedy: the chosen token is the most likely one
        assert lp.top[0] == (lp.token, pytest.approx(lp.logprob, abs=1e-6))
    assert visible(engine, s) == s.text
    assert s.cumulative_logprob == pytest.approx(sum(lp.logprob for lp in s.logprobs))
    # token strings keep special tokens, so they re-tokenize to the generated ids
    scores = await engine.score(RAW, "".join(lp.token for lp in s.logprobs))
    assert len(scores) == len(s.logprobs)
    for lp, sc in zip(s.logprobs, scores, strict=True):
        assert abs(lp.logprob - sc) < 1e-4
    # the raw distribution: sampled tokens at temperature 2 still match the model's own scores
    [t] = await engine.generate(RAW, SamplingParams(temperature=2.0, max_tokens=10, seed=3, logprobs=0))
    assert t.logprobs is not None and all(lp.top == () for lp in t.logprobs)
    assert visible(engine, t) == t.text
    if t.finish_reason == "length":  # (an end token is not part of the text, nor of the logprobs)
        scores = await engine.score(RAW, "".join(lp.token for lp in t.logprobs))
        assert max(abs(a.logprob - b) for a, b in zip(t.logprobs, scores, strict=True)) < 1e-4


async def test_stream_matches_generate(engine):
    [g] = await engine.generate(RAW, GREEDY)
    deltas, texts, tokens, finishes = await collect(engine, RAW, GREEDY, n=2)
    assert texts == [g.text, g.text]
    assert tokens == [g.num_tokens, g.num_tokens]
    assert [len(f) for f in finishes] == [1, 1]
    assert all(f[0].finish_reason == "length" for f in finishes)
    assert all(d.prompt_tokens == g.prompt_tokens for d in deltas)
    # each index's finishing delta is its last
    for i in range(2):
        assert [d for d in deltas if d.index == i][-1].finish_reason == "length"
    sampled = SamplingParams(temperature=1.0, max_tokens=20, seed=11, logprobs=2)
    gen = await engine.generate(CHAT, sampled, n=2)
    _, texts, tokens, finishes = await collect(engine, CHAT, sampled, n=2)
    assert texts == [s.text for s in gen]
    assert tokens == [s.num_tokens for s in gen]
    assert [f[0].finish_reason for f in finishes] == [s.finish_reason for s in gen]


async def test_prefix_continuation(engine):
    prompt = Prompt.chat([{"role": "user", "content": "hi"}], prefix="Sure")
    [full] = await engine.generate(prompt, SamplingParams(temperature=0, max_tokens=10, logprobs=0))
    assert full.num_tokens == 10 and full.logprobs is not None
    head = "".join(lp.token for lp in full.logprobs[:3])
    [rest] = await engine.generate(prompt.continued(head), SamplingParams(temperature=0, max_tokens=7, logprobs=0))
    assert [lp.token for lp in rest.logprobs or []] == [lp.token for lp in full.logprobs[3:]]
    assert engine._decode(engine.tokenizer(head, add_special_tokens=False)["input_ids"]) + rest.text == full.text
    assert rest.prompt_tokens == full.prompt_tokens + 3
    # a continued chat turn is the rendered conversation without the closing end token
    [raw] = await engine.generate(
        Prompt.raw("<|user|>hi<|end|><|assistant|>Sure"), SamplingParams(temperature=0, max_tokens=10)
    )
    assert raw.text == full.text


async def test_score(engine):
    scores = await engine.score(CHAT, "<think>5</think>5")
    assert len(scores) == 1 + 1 + 1 + 1  # <think>, 5, </think>, 5
    assert all(s <= 0 for s in scores)
    assert await engine.score(CHAT, "") == []
    assert len(await engine.score(RAW, "abc")) == 3


async def test_penalties_change_greedy_output(engine):
    [plain] = await engine.generate(RAW, SamplingParams(temperature=0, max_tokens=20, logprobs=0))
    [freq] = await engine.generate(RAW, SamplingParams(temperature=0, max_tokens=20, frequency_penalty=2.0, logprobs=0))
    assert [lp.token for lp in freq.logprobs or []] != [lp.token for lp in plain.logprobs or []]
    assert freq.text != plain.text or not plain.text
    [pres] = await engine.generate(
        RAW, SamplingParams(temperature=0, max_tokens=20, presence_penalty=100.0, logprobs=0)
    )
    ids = [lp.token for lp in pres.logprobs or []]
    assert len(ids) == len(set(ids))  # a token once seen is never chosen again


async def test_bad_input(engine):
    with pytest.raises(PromptTooLongError):
        await engine.generate(Prompt.raw("x" * 1100), GREEDY)
    with pytest.raises(PromptTooLongError):
        await engine.generate(RAW, SamplingParams(max_tokens=2000))
    with pytest.raises(PromptTooLongError):
        await engine.score(Prompt.raw("x" * 1000), "y" * 100)
    with pytest.raises(InvalidRequestError):
        await engine.generate(RAW, SamplingParams(logprobs=21))
    with pytest.raises(PromptTooLongError):
        async for _ in engine.stream(Prompt.raw("x" * 1100), GREEDY):
            pass
    assert engine.num_unfinished_requests() == 0


async def test_cancelling_generate_stops_the_worker(engine):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    long = SamplingParams(temperature=0, max_tokens=1000)
    task = asyncio.create_task(engine.generate(RAW, long))
    queued = asyncio.create_task(engine.generate(RAW, long))
    await asyncio.sleep(0.15)
    assert engine.num_unfinished_requests() == 2
    assert not task.done()
    assert ticks >= 3  # the event loop is free while the worker generates
    queued.cancel()
    task.cancel()
    for t in (task, queued):
        with contextlib.suppress(asyncio.CancelledError):
            await t
    assert task.cancelled() and queued.cancelled()
    await wait_idle(engine)
    ticking.cancel()
    # the engine is usable afterwards
    [s] = await engine.generate(RAW, SamplingParams(temperature=0, max_tokens=3))
    assert s.num_tokens == 3


async def test_a_deadline_ends_generation_with_what_was_generated(engine):
    """A search's time budget: the call returns at its deadline with each sample's text so far, finished abort."""
    params = SamplingParams(temperature=0, max_tokens=1000, deadline=time.monotonic() + 0.3)  # RAW never ends
    started = time.monotonic()
    samples = await engine.generate(RAW, params, n=2)
    assert time.monotonic() - started < 1.0
    assert [s.finish_reason for s in samples] == ["abort", "abort"]
    assert all(0 < s.num_tokens < 1000 for s in samples)
    assert await wait_idle(engine) < 1.0


async def test_prompt_logprobs_and_token_id_prompts(engine):
    """echo with logprobs (lm-eval's loglikelihood): every prompt token's logprob, the first none; token ids in."""
    ids = engine.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_tokens=2, temperature=0, logprobs=1, prompt_logprobs=2)
    [sample] = await engine.generate(Prompt.tokens(ids), params)
    assert sample.prompt_tokens == len(ids) == len(sample.prompt_logprobs)
    assert sample.prompt_logprobs[0].logprob is None
    assert all(t.logprob is not None and t.logprob <= 0 and len(t.top) == 2 for t in sample.prompt_logprobs[1:])
    # the prompt's logprobs are those score() gives the same tokens
    scored = await engine.score(Prompt.tokens(ids[:1]), engine.decode(ids[1:]))
    assert [t.logprob for t in sample.prompt_logprobs[1:]] == pytest.approx(scored, abs=1e-4)
    with pytest.raises(InvalidRequestError, match="vocabulary"):
        await engine.generate(Prompt.tokens([len(engine.tokenizer) + 5]), params)


async def test_breaking_out_of_a_stream_stops_the_worker(engine):
    seen = 0
    async for delta in engine.stream(RAW, SamplingParams(temperature=0, max_tokens=1000), n=2):
        seen += delta.num_tokens
        if seen >= 10:
            break
    await wait_idle(engine)
    stream = engine.stream(RAW, SamplingParams(temperature=0, max_tokens=1000))
    await anext(stream)
    await stream.aclose()
    await wait_idle(engine)


async def test_unexpected_failure_is_an_engine_error(engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device on fire")

    monkeypatch.setattr(engine._model, "generate", broken)
    with pytest.raises(EngineError, match="device on fire"):
        await engine.generate(RAW, GREEDY)
    assert engine.num_unfinished_requests() == 0


async def test_aclose_aborts_running_work_and_refuses_more(engine, tiny_model_dir):
    from ponder.engines.hf_engine import HFEngine

    other = HFEngine(str(tiny_model_dir))
    stream = other.stream(RAW, SamplingParams(temperature=0, max_tokens=1000))
    await anext(stream)
    await other.aclose()
    rest = [d async for d in stream]
    assert rest[-1].finish_reason == "abort"
    assert other.num_unfinished_requests() == 0
    with pytest.raises(EngineError):
        await other.generate(RAW, GREEDY)
    await other.aclose()  # idempotent


def test_incremental_decoder_waits_for_whole_characters():
    from ponder.engines.hf_engine import _IncrementalDecoder

    def decode(ids: list[int]) -> str:  # byte-level tokens, as in GPT-2 style BPE; 0 is a special token
        return bytes(i for i in ids if i).decode("utf-8", errors="replace")

    text = "héllo, wörld €!"
    decoder = _IncrementalDecoder(decode, list(b"ctx "))
    pieces = []
    for i, byte in enumerate(text.encode()):
        pieces.append(decoder.push(byte))
        if i % 4 == 0:
            pieces.append(decoder.push(0))
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    cut = _IncrementalDecoder(decode, [])
    assert cut.push("é".encode()[0]) == ""
    assert cut.flush() == "\ufffd"  # an incomplete character at the end comes out as U+FFFD


def test_row_holds_back_a_possible_stop_string():
    from ponder.engines.hf_engine import _IncrementalDecoder, _Row

    row = _Row([0], _IncrementalDecoder(lambda ids: "", []), ("END", "x"), max_tokens=100)
    out = []
    for piece in ["ab", "cE", "N", "d", "EN", "D", "zz"]:
        row.feed(piece)
        out.append(row.take())
    assert out[:3] == ["", "ab", "c"]  # "EN" could begin "END"
    assert "".join(out) == "abcENd"
    assert (row.finish_reason, row.stop_reason) == ("stop", "END")
    for stops, expected in [(("bcd", "c"), ("a", "bcd")), (("cd", "c"), ("ab", "c"))]:
        earliest = _Row([0], _IncrementalDecoder(lambda ids: "", []), stops, max_tokens=100)
        earliest.feed("abcd")
        assert (earliest.text, earliest.stop_reason) == expected
