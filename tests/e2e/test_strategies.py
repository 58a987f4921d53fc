"""Every strategy through the official openai SDK against `ponder serve` on the bundled models, streamed and not."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "Calculate 23 + 45 + 11. Give only the final number."}]
# Small searches: these pin the wire behaviour; docs/results/strategies.md measures quality.
STRATEGIES = {
    "best_of_n": {},
    "self_consistency": {},
    "beam_search": {"expansions": 2},
    "dvts": {"expansions": 2},
    "mcts": {"expansion_width": 2},
    "tree_of_thoughts": {"proposals": 2, "breadth": 2},
    "self_refine": {"max_iterations": 1},
    "compute_optimal": {},
}
BUDGET = {"max_samples": 4, "max_seconds": 120}


@pytest.fixture(scope="module")
def client(ponder_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{ponder_server('bundled')}/v1", api_key="unused", max_retries=0, timeout=300)


def body(name: str, **extra) -> dict:
    return {"strategy": name, "strategy_options": STRATEGIES[name], "budget": BUDGET, **extra}


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_answers_with_a_metered_ponder_block(client, name):
    resp = client.chat.completions.create(
        model="policy", messages=QUESTION, max_tokens=96, temperature=0.8, extra_body=body(name, return_trace=True)
    )
    ponder = resp.model_extra["ponder"]
    assert ponder["strategy"] == name
    spent = ponder["spent"]
    assert 1 <= spent["samples"] <= BUDGET["max_samples"]
    assert resp.usage.completion_tokens == spent["tokens"] > 0
    returned = resp.choices[0]
    assert returned.finish_reason in ("stop", "length")
    assert returned.message.content is not None
    assert returned.message.model_extra.get("reasoning_content")  # the chosen candidate's think block
    details = resp.usage.completion_tokens_details
    assert 0 <= details.reasoning_tokens < resp.usage.completion_tokens
    assert ponder["trace"]["candidates"], "return_trace lists the candidates"


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_streams_progress_then_the_answer(client, name):
    stream = client.chat.completions.create(
        model="policy",
        messages=QUESTION,
        max_tokens=96,
        temperature=0.8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=body(name),
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    kinds = []
    for chunk in chunks[1:-1]:
        delta = chunk.choices[0].delta
        if delta.model_extra.get("reasoning_content"):
            kinds.append("reasoning")
        if delta.content:
            kinds.append("content")
    assert "reasoning" in kinds and "content" in kinds
    assert kinds.index("content") > kinds.index("reasoning")  # progress first, the chosen answer after
    assert "reasoning" not in kinds[kinds.index("content") :]
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens > 0
    assert usage_chunk.model_extra["ponder"]["strategy"] == name


@pytest.mark.parametrize(
    ("name", "options", "spent_at_most", "stopped"),
    [
        ("best_of_n", {}, 4, ("confident", True)),  # one chunk of 4
        ("dvts", {"expansions": 2}, 16, ("waves", 1)),  # one wave of 4 subtrees out of 8
    ],
)
def test_stop_score_ends_an_easy_search_once_the_bundled_prm_is_sure(client, name, options, spent_at_most, stopped):
    # the wording the bundled PRM was trained on: on some others it is unsure of every sample, and the search,
    # rightly, goes on (docs/results/verifiers.md)
    easy = [{"role": "user", "content": "State the final answer to the following arithmetic problem: 23 + 45 + 11 ="}]

    def ask(stop_score: float) -> dict:
        extra = {"strategy": name, "strategy_options": {**options, "stop_score": stop_score}}
        resp = client.chat.completions.create(
            model="policy",
            messages=easy,
            max_tokens=96,
            temperature=0.8,
            extra_body={**extra, "budget": {"max_samples": 16, "max_seconds": 120}},
        )
        return resp.model_extra["ponder"]

    sure = ask(0.5)  # the bundled PRM scores a right step above 0.5
    field, value = stopped
    assert sure[field] == value and sure["spent"]["samples"] <= spent_at_most
    never = ask(1.5)  # above any probability: the whole budget is spent
    assert never["spent"]["samples"] > sure["spent"]["samples"]


def test_reasoning_effort_picks_a_strategy_and_budget(client):
    resp = client.chat.completions.create(model="policy", messages=QUESTION, max_tokens=96, reasoning_effort="low")
    ponder = resp.model_extra["ponder"]
    assert ponder["effort"] == "low" and ponder["strategy"] == "best_of_n" and ponder["verifier"] == "prm"
    assert ponder["budget"]["max_samples"] == 4
    assert ponder["spent"]["samples"] <= 4


def test_unknown_strategy_and_verifier_are_400s_naming_the_valid_ones(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="policy", messages=QUESTION, extra_body={"strategy": "magic"})
    assert "best_of_n" in err.value.message and err.value.body["param"] == "strategy"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="policy", messages=QUESTION, extra_body={"strategy": "best_of_n", "verifier": "oracle"}
        )
    assert "prm" in err.value.message and err.value.body["param"] == "verifier"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="policy", messages=QUESTION, extra_body={"strategy": "beam_search", "strategy_options": {"x": 1}}
        )
    assert err.value.body["param"] == "strategy_options"


def test_the_bundled_verifiers_are_listed_and_the_policy_picks_the_prm(ponder_server):
    import httpx

    listing = httpx.get(f"{ponder_server('bundled')}/v1/verifiers", timeout=30).json()
    loaded = {v["name"]: v for v in listing["data"]}
    assert {"prm", "orm", "math_rule", "calculator", "llm_judge"} <= set(loaded)
    assert loaded["prm"]["is_step"] and loaded["calculator"]["is_step"] and not loaded["orm"]["is_step"]
    assert listing["default"] == "prm"  # models/policy/ponder.json recommends it (docs/results/strategies.md)
