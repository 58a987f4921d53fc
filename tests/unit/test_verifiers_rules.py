"""Model-free verifiers: math_rule (with and without a reference), llm_judge over the fake engine, policy specs."""

from __future__ import annotations

import json
import math

import pytest

from ponder.core.types import EngineCapabilities
from ponder.testing import FakeEngine
from ponder.verifiers.llm_judge import LLMJudge, check_template, yes_probability
from ponder.verifiers.math_rule import MathRule, extract_answer
from ponder.verifiers.policy import PolicySpecError, PolicyVerifier

PROBLEM = [{"role": "user", "content": "What is 2 + 3 - 1?"}]


async def test_math_rule_with_reference_checks_the_visible_answer() -> None:
    rule = MathRule()
    answers = [
        "<think>2+3=5\n5-1=4\n</think>4",
        "<think>2+3=5\n5-1=3\n</think>3",
        "<think>2+3=5\n5-1=4\n</think>The answer is \\boxed{4.0}.",
        "<think>4 is what 2+3-1 makes\n</think>3",  # the visible answer counts, not numbers in the reasoning
        "<think>2+3=5\n5-1=4",  # cut off: falls back to the last number of the reasoning
        "<think>hmm\n</think>no idea",
        "",
    ]
    assert await rule.score(PROBLEM, answers, reference="4") == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert await rule.score(PROBLEM, ["<think>x</think>0.75", "\\boxed{\\frac{3}{4}}"], reference="3/4") == [1.0, 1.0]


def test_extract_answer_falls_back_to_the_last_boxed_then_number() -> None:
    assert extract_answer("<think>so \\boxed{7} or \\boxed{9}") == [9, "9"]
    assert extract_answer("<think>so \\boxed{7} or \\boxed{9}", fallback=False) == []
    assert extract_answer("<think>1+1=2\n2+5=7") == [7, "7"]


async def test_math_rule_without_reference_scores_form_and_agreement() -> None:
    rule = MathRule()
    answers = [
        "<think>a\n</think>4",  # closed, parsable, 3 of 5 agree (4, 4.0, \boxed{4})
        "<think>b\n</think>4.0",
        "<think>c\n</think>\\boxed{4}",
        "<think>d\n</think>5",  # closed, parsable, alone
        "<think>e\n5-1=4",  # never closed, no visible answer
    ]
    scores = await rule.score(PROBLEM, answers)
    assert scores == pytest.approx([0.25 + 0.25 + 0.5 * 3 / 5] * 3 + [0.25 + 0.25 + 0.5 / 5, 0.0])
    assert await rule.score(PROBLEM, ["4"]) == [1.0]  # no think block at all is well formed
    assert await rule.score(PROBLEM, ["<think>x</think>I do not know"]) == [0.25]


def test_yes_probability_normalises_yes_against_no() -> None:
    p = yes_probability([("Yes", math.log(0.6)), (" no", math.log(0.2)), ("maybe", math.log(0.1))])
    assert p == pytest.approx(0.75)
    assert yes_probability([(" YES ", -1.0), ("yes", -1.0)]) == pytest.approx(1.0)  # each token counted once
    assert yes_probability([("maybe", -0.1)]) == 0.5


def _judge_engine(p_yes: dict[str, float], **caps) -> FakeEngine:
    """A judge that says yes with probability ``p_yes[answer]`` (0.5 when it answers neither)."""

    def answer_of(prompt) -> str:
        text = prompt.messages[-1]["content"]
        return text.split("Proposed answer:\n", 1)[1].split("\n\n", 1)[0]

    def top(prompt, token):
        p = p_yes.get(answer_of(prompt))
        if p is None:
            return [("maybe", -0.1), ("perhaps", -2.5)]
        alternatives = [("Yes", math.log(p * 0.9)), (" no", math.log((1 - p) * 0.9)), ("?", math.log(0.1))]
        return sorted(alternatives, key=lambda t: -t[1])

    def respond(prompt, params, index) -> str:
        return top(prompt, "")[0][0]  # greedy: the most likely token

    return FakeEngine(respond, top_logprobs=top, capabilities=EngineCapabilities(max_model_len=4096, **caps))


async def test_llm_judge_returns_p_yes_per_answer_from_greedy_one_token_calls() -> None:
    engine = _judge_engine({"4": 0.8, "5": 0.1})
    judge = LLMJudge(engine)
    answers = ["<think>2+3=5\n5-1=4\n</think>4", "<think>x</think>5", "<think>y</think>6"]
    assert await judge.score(PROBLEM, answers) == pytest.approx([0.8, 0.1, 0.5])
    assert len(engine.calls) == 3
    prompt, params, n = engine.calls[0]
    assert (params.max_tokens, params.temperature, params.logprobs, n) == (1, 0.0, 20, 1)
    assert "What is 2 + 3 - 1?" in prompt.messages[0]["content"]
    assert "<think>" not in prompt.messages[0]["content"]  # the judge sees the visible answer


async def test_llm_judge_template_reference_and_prefix() -> None:
    engine = _judge_engine({"4": 0.8})
    judge = LLMJudge(
        engine, "Q: {problem}\nProposed answer:\n{answer}\n\nRef {reference}. Right?", prefix="<think></think>"
    )
    assert await judge.score("What is 2 + 3 - 1?", ["4"], reference="4") == pytest.approx([0.8])
    prompt = engine.calls[0][0]
    assert prompt.messages[0]["content"].endswith("Ref 4. Right?") and prompt.prefix == "<think></think>"
    assert "(The reference answer is: 4)" in LLMJudge(engine).render(PROBLEM, "4", reference="4")
    assert LLMJudge(engine).bind(_judge_engine({})).engine is not engine


def test_llm_judge_refuses_engines_without_logprobs_and_bad_templates() -> None:
    with pytest.raises(ValueError, match="needs an engine that returns logprobs; fake-model does not"):
        LLMJudge(_judge_engine({}, logprobs=False))
    with pytest.raises(ValueError, match="prefix continuation"):
        LLMJudge(_judge_engine({}, prefix_continuation=False), prefix="<think></think>")
    with pytest.raises(ValueError, match=r"must contain \{answer\}"):
        check_template("Is {problem} solved?")
    with pytest.raises(ValueError, match=r"only \{problem\}, \{answer\} and \{reference\}"):
        check_template("{answer} for {question}")


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_policy_from_yaml_flags_violations(tmp_path) -> None:
    spec = _write(
        tmp_path,
        "policy.yaml",
        "forbidden:\n  - '\\bpassword\\b'\n  - literal: 'rm -rf'\nrequired:\n  - '\\d'\nmax_chars: 20\n"
        "refusal: Sorry, no.\n",
    )
    policy = PolicyVerifier.from_file(spec, name="safety")
    assert (policy.name, policy.refusal, policy.source) == ("safety", "Sorry, no.", str(spec))
    assert policy.violations("<think>fine</think>4") == []
    assert policy.violations("<think>the PASSWORD is</think>4") == ["contains forbidden /\\bpassword\\b/"]
    assert policy.violations("run rm -rf / then 4") == ["contains forbidden 'rm -rf'"]
    assert policy.violations("<think>1</think>four") == ["does not match required /\\d/"]
    assert policy.violations("4" * 25) == ["is 25 characters long, more than max_chars 20"]
    assert await policy.score(PROBLEM, ["4", "password 4", "x"]) == [1.0, 0.0, 0.0]


def test_policy_json_and_case_sensitivity(tmp_path) -> None:
    spec = _write(tmp_path, "p.json", json.dumps({"forbidden": ["Secret"], "ignore_case": False}))
    policy = PolicyVerifier.from_file(spec)
    assert policy.violations("a secret") == [] and policy.violations("a Secret") != []
    assert policy.refusal == "I can't help with that request."


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.yaml", "forbidden: [\n", "is not valid YAML"),
        ("a.json", "{", "is not valid JSON"),
        ("a.yaml", "- just a list\n", "must be a mapping"),
        ("a.yaml", "forbiden: [x]\n", r"unknown key\(s\) \['forbiden'\]; valid: forbidden, required"),
        ("a.yaml", "forbidden: x\n", "forbidden must be a list of patterns"),
        ("a.yaml", "forbidden: ['(unclosed']\n", r"forbidden\[0\]: invalid regular expression '\(unclosed'"),
        ("a.yaml", "required: [3]\n", r"required\[0\]: each entry must be a non-empty regex string"),
        ("a.yaml", "max_chars: -1\n", "max_chars must be a positive integer"),
        ("a.yaml", "refusal: ''\n", "refusal must be a non-empty string"),
        ("a.toml", "x = 1\n", "unsupported policy spec format '.toml'"),
    ],
)
def test_malformed_policy_specs_fail_at_load_time(tmp_path, name, text, message) -> None:
    with pytest.raises(PolicySpecError, match=message):
        PolicyVerifier.from_file(_write(tmp_path, name, text))


def test_missing_policy_file(tmp_path) -> None:
    with pytest.raises(PolicySpecError, match="does not exist"):
        PolicyVerifier.from_file(tmp_path / "nope.yaml")
