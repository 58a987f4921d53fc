"""Reasoning state across turns through the official openai SDK against `ponder serve` on the bundled models:
the Responses API (streamed and not) with encrypted reasoning items, and thought signatures on chat completions."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.e2e
FIRST = "What is 12+7?"
SECOND = "What is 3*41?"
INCLUDE = ["reasoning.encrypted_content"]


@pytest.fixture(scope="module")
def client(ponder_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{ponder_server('bundled')}/v1", api_key="unused", max_retries=0, timeout=300)


def test_responses_two_turns_pass_the_reasoning_item_back(client):
    first = client.responses.create(
        model="policy", input=FIRST, include=INCLUDE, store=False, max_output_tokens=96, temperature=0
    )
    assert first.status == "completed" and first.output_text.strip()
    reasoning, message = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.content and reasoning.content[0].text  # the policy thinks before it answers
    assert message.type == "message" and message.content[0].text == first.output_text
    assert first.usage.output_tokens > 0 and first.usage.total_tokens > first.usage.output_tokens
    second = client.responses.create(
        model="policy",
        input=[{"role": "user", "content": FIRST}, *first.output, {"role": "user", "content": SECOND}],
        include=INCLUDE,
        store=False,
        max_output_tokens=96,
        extra_body={"strategy": "best_of_n", "budget": {"max_samples": 2}},  # Ponder's extensions work here
    )
    assert second.status in ("completed", "incomplete") and second.output[0].encrypted_content
    assert second.model_extra["ponder"]["strategy"] == "best_of_n"
    assert second.model_extra["ponder"]["spent"]["samples"] == 2
    forged = reasoning.model_copy(update={"encrypted_content": reasoning.encrypted_content[:-4] + "AAAA"})
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="policy",
            input=[{"role": "user", "content": FIRST}, forged, message, {"role": "user", "content": SECOND}],
        )
    assert refused.value.code == "invalid_thought_signature" and refused.value.param == "input[1].encrypted_content"


def test_responses_stream_events_and_a_streamed_second_turn(client):
    def streamed(items) -> tuple[list[str], openai.types.responses.Response, str]:
        names, text, final = [], "", None
        for event in client.responses.create(
            model="policy", input=items, include=INCLUDE, store=False, max_output_tokens=96, stream=True
        ):
            names.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                final = event.response
        return names, final, text

    names, final, text = streamed([{"role": "user", "content": FIRST}])
    assert names[0] == "response.created" and names[-1] == "response.completed"
    for kind in ("response.reasoning_text.delta", "response.output_text.delta", "response.output_item.done"):
        assert kind in names
    assert final.output_text == text and final.output[0].encrypted_content
    names, second, _ = streamed(
        [{"role": "user", "content": FIRST}, *final.output, {"role": "user", "content": SECOND}]
    )
    assert names[-1] == "response.completed" and second.output_text


def test_chat_thought_signature_goes_back_on_the_assistant_message(client):
    question = {"role": "user", "content": FIRST}
    first = client.chat.completions.create(model="policy", messages=[question], max_tokens=96, temperature=0)
    message = first.choices[0].message
    signature = message.model_extra["thought_signature"]
    assert message.model_extra["extra_content"] == {"google": {"thought_signature": signature}}
    answer = {"role": "assistant", "content": message.content, "thought_signature": signature}
    follow = {"role": "user", "content": SECOND}
    second = client.chat.completions.create(model="policy", messages=[question, answer, follow], max_tokens=96)
    assert second.choices[0].message.model_extra["thought_signature"] != signature
    with pytest.raises(openai.BadRequestError) as refused:
        other = {"role": "user", "content": "What is 1+1?"}
        client.chat.completions.create(model="policy", messages=[other, answer, follow], max_tokens=96)
    assert refused.value.code == "invalid_thought_signature" and "messages[1]" in refused.value.message
