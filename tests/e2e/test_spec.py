"""`ponder serve --spec` on the bundled policy (transformers engine), through the official openai SDK: an
out-of-scope request is refused on chat and on the Responses API, and every answer the server gives complies."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from ponder.verifiers.spec import load_spec
from tests.e2e.conftest import PONDER, start_server, stop_server

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "specs" / "example.yaml"


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory):
    argv = [PONDER, "serve", "--engine", "hf", "--served-model-name", "policy", "--spec", str(EXAMPLE)]
    argv += ["--no-default-verifiers", "--verifier", "calculator"]
    proc, url = start_server(argv, tmp_path_factory.mktemp("spec") / "server.log")
    yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
    stop_server(proc)


def test_the_spec_refuses_filters_and_reports(spec_server):
    client = spec_server
    spec = load_spec(EXAMPLE)
    joke = client.chat.completions.create(
        model="policy", messages=[{"role": "user", "content": "Tell me a joke."}], max_tokens=64
    )
    assert joke.choices[0].message.content == spec.refusal and joke.choices[0].finish_reason == "content_filter"
    assert joke.model_extra["ponder"]["content_filter"]["violated"] == {"arithmetic-only": 1}

    question = "State the final answer to the following arithmetic problem: 1 - 2 - 3 ="
    resp = client.chat.completions.create(
        model="policy",
        messages=[{"role": "user", "content": question}],
        max_tokens=96,
        temperature=0.8,
        seed=0,
        extra_body={"strategy": "best_of_n", "verifier": "calculator", "budget": {"max_samples": 4}},
    )
    choice, report = resp.choices[0], resp.model_extra["ponder"]["content_filter"]
    if choice.finish_reason == "content_filter":
        assert choice.message.content == spec.refusal and report["refused"] and report["violated"]
    else:  # what it says breaks no checked rule, its reasoning included
        text = f"<think>{choice.message.model_extra.get('reasoning_content') or ''}</think>{choice.message.content}"
        assert [v for rule in spec.rules for v in rule.answer_violations(text)] == []
    assert report["checked"] >= 1

    response = client.responses.create(model="policy", input="What is the capital of France?", store=False)
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    assert response.output_text == spec.refusal
