"""The bundled policy as a new user meets it (`make serve`, the official SDK): how people ask, and what is not sums."""

from __future__ import annotations

import openai
import pytest

from ponder.tasks.phrasings import REFUSAL

pytestmark = pytest.mark.e2e

# The issue's own examples within the two-digit range it must master, and two worded as no training chat is.
QUESTIONS = [
    ("What is 12+7?", "19"),
    ("3*41?", "123"),
    ("Compute 25 * 4.", "100"),
    ("Figure out 38 + 5.", "43"),
    ("What do you get for 56 + 7?", "63"),
]


@pytest.fixture(scope="module")
def client(ponder_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{ponder_server('bundled')}/v1", api_key="unused")


@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
def test_natural_questions_get_the_answer_with_the_reasoning_split_off(client, question, answer):
    resp = client.chat.completions.create(
        model="policy", messages=[{"role": "user", "content": question}], max_tokens=128, temperature=0
    )
    message = resp.choices[0].message
    assert message.content == answer, (question, message)
    assert message.model_extra["reasoning_content"].strip()
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("effort", [None, "low", "high"])
def test_what_is_not_arithmetic_gets_a_short_polite_refusal_at_any_effort(client, effort):
    extra = {"reasoning_effort": effort} if effort else {}
    resp = client.chat.completions.create(
        model="policy",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, who are you?"},
        ],
        max_tokens=128,
        temperature=0,
        **extra,
    )
    message = resp.choices[0].message
    assert message.content == REFUSAL
    assert "<think>" not in message.content and "</think>" not in message.content
    assert resp.choices[0].finish_reason == "stop"
