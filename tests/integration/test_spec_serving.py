"""A model spec through the app (fake engine): in the model's context, filtering every strategy, refusing, reporting."""

from __future__ import annotations

import math

import pytest

from ponder.core.types import EngineCapabilities
from ponder.server.settings import ServerSettings
from ponder.testing import FakeEngine
from ponder.verifiers.registry import VerifierSet
from ponder.verifiers.spec import SpecVerifier, parse_spec
from tests.helpers import client, fake_app, sse_events

MODEL = "fake-model"
QUESTION = [{"role": "user", "content": "What is 2+3?"}]
REFUSAL = "I only answer arithmetic, with a whole number other than five."
RULES = [
    {"id": "arithmetic-only", "text": "Only arithmetic.", "request_required": [r"\d\s*[-+*]\s*\d"]},
    {"id": "number-only", "text": "One whole number.", "answer_format": "integer"},
    {"id": "no-five", "text": "Never answer five.", "forbidden": [r"^\s*5\s*$"]},
]


def spec_verifier(engine, **extra) -> SpecVerifier:
    raw = {"spec": "You do arithmetic.", "refusal": REFUSAL, "rules": RULES, "judge": False, **extra}
    return SpecVerifier(parse_spec(raw), engine)


def answers(prompt, params, index):
    """Sample i answers 5 when i is even, else i."""
    answer = 5 if index % 2 == 0 else index
    return f"<think>2+3={answer}\n</think>{answer}"


class PrefersFive:
    """An outcome verifier: 1.0 for the answer 5; it records the conversations it was shown."""

    name = "five"
    kind = "orm"

    def __init__(self) -> None:
        self.problems = []

    async def score(self, problem, answers, reference=None):
        self.problems.append(problem)
        return [1.0 if a.endswith(">5") else 0.1 for a in answers]


def app_with(responder=answers, engine=None, **spec):
    engine = engine or FakeEngine(responder)
    ranker = PrefersFive()
    verifiers = VerifierSet([ranker, spec_verifier(engine, **spec)])
    app, _ = fake_app(engine, ServerSettings(), verifiers)
    return app, engine, ranker


async def post(app, body, messages=QUESTION):
    async with client(app) as c:
        return await c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, **body})


async def test_the_best_compliant_candidate_wins_and_the_ponder_block_names_the_broken_rules():
    app, _, _ = app_with(context="none")
    data = (await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 4}})).json()
    choice = data["choices"][0]
    assert choice["message"]["content"] in {"1", "3"} and choice["finish_reason"] == "stop"
    report = data["ponder"]["content_filter"]
    assert report == {"policy": "spec", "checked": 4, "rejected": 2, "refused": False, "violated": {"no-five": 2}}


@pytest.mark.parametrize(
    "body",
    [
        {"strategy": "none"},
        {"strategy": "best_of_n", "budget": {"max_samples": 4}},
        {"strategy": "self_consistency", "budget": {"max_samples": 4}},
        {"reasoning_effort": "low"},
    ],
)
async def test_when_every_candidate_violates_the_answer_is_the_refusal(body):
    app, _, _ = app_with(lambda p, s, i: f"<think>2+3={i}\n</think>five or {i}", context="none")
    data = (await post(app, body)).json()
    choice = data["choices"][0]
    assert choice["message"]["content"] == REFUSAL and choice["finish_reason"] == "content_filter"
    report = data["ponder"]["content_filter"]
    assert report["refused"] is True and report["rejected"] == report["checked"] >= 1
    assert report["violated"] == {"number-only": report["checked"]}


async def test_a_streamed_refusal_ends_with_content_filter_and_the_report():
    app, _, _ = app_with(lambda p, s, i: "<think>x\n</think>5", context="none")
    body = {"strategy": "best_of_n", "budget": {"max_samples": 2}, "stream": True}
    body["stream_options"] = {"include_usage": True}
    events = sse_events((await post(app, body)).text)
    chunks = [e for e in events[:-1] if e["choices"]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == REFUSAL
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["content_filter"]
    assert events[-2]["ponder"]["content_filter"]["violated"] == {"no-five": 2}


async def test_a_request_the_spec_excludes_is_refused_without_generating():
    app, engine, _ = app_with(context="none")
    data = (await post(app, {"strategy": "best_of_n"}, [{"role": "user", "content": "Tell me a joke."}])).json()
    assert data["choices"][0]["message"]["content"] == REFUSAL
    assert data["choices"][0]["finish_reason"] == "content_filter"
    assert data["ponder"]["content_filter"]["violated"] == {"arithmetic-only": 1}
    assert data["usage"]["completion_tokens"] == 0 and engine.calls == []


async def test_n_choices_are_filled_with_refusals_when_fewer_comply():
    app, _, _ = app_with(lambda p, s, i: f"<think>x\n</think>{5 if i else 7}", context="none")
    data = (await post(app, {"strategy": "best_of_n", "n": 2, "budget": {"max_samples": 4}})).json()
    contents = [c["message"]["content"] for c in data["choices"]]
    assert contents == ["7", REFUSAL]
    assert [c["finish_reason"] for c in data["choices"]] == ["stop", "content_filter"]


async def test_the_model_reads_the_spec_as_a_system_turn_and_verifiers_do_not():
    app, engine, ranker = app_with()  # context: system, the default
    await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 2}})
    spec_text = "You do arithmetic.\n\nRules:\n- Only arithmetic.\n- One whole number.\n- Never answer five."
    prompt = engine.calls[0][0]
    assert list(prompt.messages) == [{"role": "system", "content": spec_text}, *QUESTION]
    assert ranker.problems == [QUESTION]  # the ranker judges the client's conversation
    own = [{"role": "system", "content": "Be terse."}, *QUESTION]
    await post(app, {"strategy": "none"}, own)
    assert engine.calls[-1][0].messages[0] == {"role": "system", "content": f"{spec_text}\n\nBe terse."}


async def test_the_judge_reading_the_spec_rejects_candidates_the_rules_let_through():
    def respond(prompt, params, index):
        text = prompt.messages[-1]["content"]
        if "Does the proposed answer comply with the spec?" in text:
            return "yes" if "Proposed answer:\n3\n" in text else "no"
        return answers(prompt, params, index)

    def top(prompt, token):
        p = 0.9 if "Proposed answer:\n3\n" in prompt.messages[-1]["content"] else 0.1
        return [("yes", math.log(p)), ("no", math.log(1 - p))]

    engine = FakeEngine(respond, top_logprobs=top, capabilities=EngineCapabilities(max_model_len=4096))
    app, _, _ = app_with(engine=engine, context="none", judge={"threshold": 0.5}, rules=RULES[:2])
    data = (await post(app, {"strategy": "best_of_n", "budget": {"max_samples": 4}})).json()
    assert data["choices"][0]["message"]["content"] == "3"
    assert data["ponder"]["content_filter"]["violated"] == {"judge": 3}  # 5, 1, 5
    judged = [c for c in engine.calls if "comply with the spec" in c[0].messages[-1]["content"]]
    assert len(judged) == 3  # the chosen "5" first, then the rest: one call per distinct answer


async def test_the_spec_is_listed_as_a_verifier_and_can_rank():
    app, _, _ = app_with(context="none")
    async with client(app) as c:
        listed = (await c.get("/v1/verifiers")).json()
    spec = next(v for v in listed["data"] if v["name"] == "spec")
    assert spec["kind"] == "spec"
    data = (await post(app, {"strategy": "best_of_n", "verifier": "spec", "budget": {"max_samples": 4}})).json()
    assert data["ponder"]["verifier"] == "spec" and data["choices"][0]["message"]["content"] in {"1", "3"}
