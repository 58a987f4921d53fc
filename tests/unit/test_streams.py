"""collect: deltas add up to samples, each handed on as it finishes; the deadline leaves the rest "abort"."""

from __future__ import annotations

import time

from ponder.core.streams import collect
from ponder.core.types import Prompt, SamplingParams
from ponder.testing import FakeEngine

PROMPT = Prompt.chat([{"role": "user", "content": "hi"}])


def words(counts):
    return lambda prompt, params, index: " ".join(f"w{index}" for _ in range(counts[index]))


async def test_each_sample_is_handed_on_as_it_finishes_and_equals_the_final_one():
    engine = FakeEngine(words([3, 1, 2]))
    params = SamplingParams(temperature=1.0, logprobs=0)
    handed = []
    samples = await collect(engine.stream(PROMPT, params, 3), params, 3, lambda i, s: handed.append((i, s)))
    assert [i for i, _ in handed] == [1, 2, 0]  # shortest first
    assert all(samples[i] == s for i, s in handed)
    assert [s.num_tokens for s in samples] == [3, 1, 2]
    assert all(s.finish_reason == "stop" and len(s.logprobs) == s.num_tokens for s in samples)


async def test_at_the_deadline_unfinished_samples_come_back_aborted_and_are_not_handed_on():
    engine = FakeEngine(words([1, 500]), token_delay=0.005)
    params = SamplingParams(temperature=1.0, deadline=time.monotonic() + 0.3)
    handed = []
    samples = await collect(engine.stream(PROMPT, params, 2), params, 2, lambda i, s: handed.append(i))
    assert handed == [0]
    assert samples[0].finish_reason == "stop"
    assert samples[1].finish_reason == "abort" and 0 < samples[1].num_tokens < 500
    assert engine.active == 0  # the stream was closed
