"""A thinking budget on the real engine (vLLM's CPU build, the bundled policy), through the official openai SDK:
out of thinking tokens, the sample's thought is closed and it answers, streamed and not, one request each."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "State the final answer to the following arithmetic problem: 31 + 45 + 12 ="}]


def test_a_thinking_budget_closes_the_thought_and_the_model_answers(ponder_server):
    client = openai.OpenAI(base_url=f"{ponder_server('bundled')}/v1", api_key="unused", max_retries=0, timeout=300)
    extra = {"strategy": "none", "thinking_budget": 6}
    resp = client.chat.completions.create(
        model="policy", messages=QUESTION, max_tokens=64, temperature=0, extra_body=extra
    )
    message, usage = resp.choices[0].message, resp.usage
    reasoning = message.model_extra["reasoning_content"]
    # 6 thinking tokens (the policy's tokens are characters, the tag one of them): cut short, then an answer.
    assert 0 < len(reasoning) <= 6 and message.content.strip() and resp.choices[0].finish_reason == "stop"
    assert usage.completion_tokens >= 6 + 1 and resp.model_extra["ponder"]["thinking"]["tokens"] == 6
    chunks = list(
        client.chat.completions.create(
            model="policy", messages=QUESTION, max_tokens=64, temperature=0, extra_body=extra, stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.model_extra.get("reasoning_content") or "" for d in deltas) == reasoning
    assert "".join(d.content or "" for d in deltas) == message.content
