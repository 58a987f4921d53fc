"""self_refine: critique/revise chats built from the request, stop at acceptance, best draft returned, budget kept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ponder.core.errors import PromptTooLongError
from ponder.core.types import Budget, EngineCapabilities, Prompt, SamplingParams
from ponder.strategies.base import StrategyRequest
from ponder.strategies.self_refine import DEFAULT_CRITIQUE, DEFAULT_REVISE, SelfRefine, iteration_count, says, turn
from ponder.strategies.trace import Trace
from ponder.testing import FakeEngine, RulePRM, TableVerifier

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]


def refiner(drafts: list[str], critiques: list[str] | None = None):
    """Drafts in order (first answer, then one per revision) and the critiques the model writes."""
    critiques = critiques or ["<think>2+3=6\n</think>6"]
    seen = {"drafts": 0, "critiques": 0}

    def respond(prompt: Prompt, params: SamplingParams, index: int) -> str:
        last = prompt.messages[-1]["content"] if prompt.messages else prompt.text
        if last.rstrip().endswith(DEFAULT_CRITIQUE) or last == "CRIT":
            seen["critiques"] += 1
            return critiques[min(seen["critiques"], len(critiques)) - 1]
        seen["drafts"] += 1
        answer = drafts[min(seen["drafts"], len(drafts)) - 1]
        return f"<think>2+3={answer}\n</think>{answer}"

    return respond


def two_steps(respond):
    """The same drafts, reasoned in two steps: ``2+3`` first."""
    return lambda prompt, params, index: respond(prompt, params, index).replace("<think>", "<think>2+3\n", 1)


def request(messages=MESSAGES) -> StrategyRequest:
    return StrategyRequest(Prompt.chat(messages), SamplingParams(temperature=0.7))


async def refine(engine, verifier=None, budget=None, trace=None, **options):
    budget = budget or Budget(max_samples=16)
    return await SelfRefine.from_request(options).run(request(), engine, verifier, budget, trace)


async def test_stops_at_the_first_accepted_draft():
    engine = FakeEngine(refiner(["4", "5", "5"]))
    trace = Trace(keep=True)
    result = await refine(engine, TableVerifier({"4": 0.2, "5": 0.9}, default=0.0), trace=trace)
    assert len(engine.calls) == 3  # draft, critique, revision: then the verifier accepts and nothing more is drawn
    assert result.spent.samples == 3 and result.spent.verifier_calls == 2
    assert result.choices[0].answer == "5"
    assert (result.accepted, result.iterations, result.stop_reason) == (True, 1, "accepted")
    lines = [e.data["message"] for e in trace.events if e.data.get("message")]
    assert lines[0] == "draft 1: answer 4, score 0.200 — revising"
    assert lines[1] == "critique 1: 6 — revising"
    assert lines[2] == "draft 2: answer 5, score 0.900 — accepted"
    assert result.summary() == {
        "iterations": 1,
        "accepted": True,
        "stop_reason": "accepted",
        "drafts": 2,
        "draft_scores": [0.2, 0.9],
        "best_draft": 2,
    }


async def test_an_accepted_first_draft_costs_one_sample():
    engine = FakeEngine(refiner(["5"]))
    result = await refine(engine, TableVerifier({"5": 0.5}, default=0.0))  # the threshold is inclusive
    assert len(engine.calls) == 1 and result.iterations == 0 and result.accepted


async def test_returns_the_best_draft_when_revisions_get_worse():
    engine = FakeEngine(refiner(["5", "6", "7"]))
    result = await refine(engine, TableVerifier({"5": 0.4, "6": 0.1, "7": 0.3}, default=0.0), max_iterations=2)
    assert len(engine.calls) == 5  # 1 draft + 2 x (critique + revision)
    assert result.draft_scores == [0.4, 0.1, 0.3]
    assert result.choices[0].answer == "5" and result.best_draft == 1
    assert (result.accepted, result.stop_reason) == (False, "max_iterations")


async def test_n_choices_are_the_best_distinct_drafts():
    engine = FakeEngine(refiner(["5", "6", "7"]))
    req = StrategyRequest(Prompt.chat(MESSAGES), SamplingParams(), n=2)
    verifier = TableVerifier({"5": 0.4, "6": 0.1, "7": 0.3}, default=0.0)
    result = await SelfRefine.from_request({"max_iterations": 2}).run(req, engine, verifier, Budget(max_samples=9))
    assert [c.answer for c in result.choices] == ["5", "7"]


@pytest.mark.parametrize(("max_samples", "option", "calls"), [(1, None, 1), (4, None, 3), (4, 10, 3), (16, 1, 3)])
async def test_rounds_are_capped_by_the_budget(max_samples, option, calls):
    engine = FakeEngine(refiner(["4"]))
    options = {} if option is None else {"max_iterations": option}
    result = await refine(
        engine, TableVerifier({"4": 0.0}, default=0.0), budget=Budget(max_samples=max_samples), **options
    )
    assert len(engine.calls) == calls == result.spent.samples <= max_samples
    assert result.exhausted is None  # a round is only started when the budget pays for both its samples
    assert result.iterations == (calls - 1) // 2


def test_iteration_count_mapping():
    assert [iteration_count(None, m) for m in (1, 2, 3, 4, 16, 64)] == [0, 0, 1, 1, 7, 31]
    assert iteration_count(None, None) == 3 and iteration_count(5, None) == 5 and iteration_count(0, 64) == 0


async def test_token_budget_ends_the_loop_with_the_best_so_far():
    engine = FakeEngine(refiner(["4", "5"]))
    # drafts and critiques are 2 fake tokens each: the revision gets the 1 token left and is cut short,
    # the next critique cannot be admitted
    result = await refine(engine, TableVerifier({"4": 0.3, "5": 0.9}, default=0.0), budget=Budget(max_tokens=5))
    assert result.exhausted == "max_tokens" and result.stop_reason == "budget"
    assert result.spent.tokens == 5 and len(engine.calls) == 3
    assert [c.finish_reason for c in result.trace.candidates] == ["stop", "length"]
    assert [c.answer for c in result.choices] == ["4"]  # the finished draft, not the truncated revision


async def test_a_chat_outgrowing_the_context_ends_refinement_with_the_best_draft():
    engine = FakeEngine(refiner(["4", "5"]), capabilities=EngineCapabilities(max_model_len=40))
    result = await refine(engine, TableVerifier({"4": 0.3}, default=0.0), max_iterations=3)
    # the request is 8 fake tokens, the critique chat 36 (fits in 40), the revision chat 59 (does not)
    assert len(engine.calls) == 2 and result.spent.samples == 2
    assert result.stop_reason == "context_full" and [c.answer for c in result.choices] == ["4"]
    assert result.exhausted is None


async def test_a_request_that_does_not_fit_is_still_an_error():
    engine = FakeEngine(refiner(["4"]), capabilities=EngineCapabilities(max_model_len=4))
    with pytest.raises(PromptTooLongError):
        await refine(engine, TableVerifier({"4": 0.3}, default=0.0))


async def test_critique_and_revision_chats_extend_the_original_conversation():
    critique = "<think>check 2+3\n</think>The sum is wrong."
    engine = FakeEngine(refiner(["4", "5"], [critique]))
    await refine(engine, TableVerifier({"4": 0.1, "5": 0.9}, default=0.0))
    first, critic, reviser = (prompt for prompt, _, _ in engine.calls)
    draft = "<think>2+3=4\n</think>4"
    assert first.messages == tuple(MESSAGES)
    assert critic.messages == (
        *MESSAGES,
        {"role": "assistant", "content": draft},
        {"role": "user", "content": DEFAULT_CRITIQUE},
    )
    assert reviser.messages == (
        *critic.messages,
        {"role": "assistant", "content": critique},
        {"role": "user", "content": DEFAULT_REVISE},
    )
    assert all(p.prefix == "" for p in (critic, reviser))  # new assistant turns, not continuations
    assert all(params.temperature == 0.7 for _, params, _ in engine.calls)  # the user's sampling settings


async def test_custom_prompts_are_used():
    engine = FakeEngine(refiner(["4", "5"]))
    await refine(
        engine, TableVerifier({"4": 0.1, "5": 0.9}, default=0.0), critique_prompt="CRIT", revise_prompt="FIX IT"
    )
    assert engine.calls[1][0].messages[-1] == {"role": "user", "content": "CRIT"}
    assert engine.calls[2][0].messages[-1] == {"role": "user", "content": "FIX IT"}


def test_raw_prompts_get_the_turns_as_paragraphs():
    prompt = turn(Prompt.raw("Q: 2+3?\nA: "), [("assistant", "4"), ("user", "Check it.")])
    assert prompt.text == "Q: 2+3?\nA: 4\n\nCheck it.\n\n"


async def test_without_a_verifier_the_critique_decides():
    critiques = ["<think>2+3=5\n</think>Incorrect: 2+3 is 5.", "<think>ok\n</think>Correct."]
    engine = FakeEngine(refiner(["4", "5", "6"], critiques))
    trace = Trace(keep=True)
    result = await refine(engine, trace=trace)
    assert len(engine.calls) == 4  # draft, critique (incorrect), revision, critique (correct): stop
    assert result.choices[0].answer == "5"  # the approved draft, the latest one
    assert (result.accepted, result.stop_reason, result.iterations) == (True, "critique_approved", 2)
    assert "critique 2: Correct. — approved" in [e.data.get("message") for e in trace.events]


async def test_without_a_verifier_and_stop_phrase_it_runs_all_rounds_and_returns_the_last_draft():
    engine = FakeEngine(refiner(["4", "5", "6"], ["Correct."]))
    result = await refine(engine, stop_phrase=None, max_iterations=2)
    assert len(engine.calls) == 5 and result.choices[0].answer == "6" and not result.accepted


async def test_a_step_verifier_scores_drafts_through_the_aggregation():
    verifier = RulePRM({"=4": 0.2, "=5": 0.6}, default=0.9)  # the first step scores 0.9, the last by its answer
    engine = FakeEngine(two_steps(refiner(["4", "5"])))
    result = await refine(engine, verifier, aggregation="min", max_iterations=1)
    assert verifier.calls[0] == [["2+3", "2+3=4"]]
    assert result.draft_scores == [0.2, 0.6] and result.accepted  # min(0.9, 0.6) passes 0.5
    result = await refine(FakeEngine(two_steps(refiner(["4", "5"]))), verifier, aggregation="prod", max_iterations=1)
    assert result.draft_scores == [pytest.approx(0.18), pytest.approx(0.54)]
    result = await refine(
        FakeEngine(two_steps(refiner(["4", "5"]))), verifier, aggregation="prod", accept_threshold=0.6
    )
    assert result.choices[0].answer == "5" and not result.accepted and result.iterations == 7


def test_stop_phrase_matching():
    assert says("<think>x\n</think>Correct.", "correct")
    assert says("  **correct** - well done", "correct")
    assert says("Looks good to me", "looks  good")
    assert not says("Incorrect.", "correct")
    assert not says("correctly computed? no", "correct")
    assert not says("Not correct", "correct")
    assert not says("<think>Correct", "correct")  # only the visible answer counts


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_iterations": -1}, "max_iterations"),
        ({"max_iterations": 1001}, "max_iterations"),
        ({"accept_threshold": "nan"}, "accept_threshold"),
        ({"accept_threshold": "high"}, "accept_threshold"),
        ({"critique_prompt": ""}, "critique_prompt"),
        ({"revise_prompt": "x" * 4001}, "revise_prompt"),
        ({"stop_phrase": "   "}, "stop_phrase"),
        ({"aggregation": "max"}, "aggregation"),
        ({"iterations": 3}, "iterations"),
    ],
)
def test_invalid_options_are_refused(options, field):
    with pytest.raises(ValidationError) as err:
        SelfRefine.from_request(options)
    assert err.value.errors()[0]["loc"][0] == field
