"""Budget forcing: a sample out of thinking tokens gets ``</think>`` and answers; early ends extended with a cue."""

from __future__ import annotations

import dataclasses

import pytest

from ponder.core.types import Budget, Prompt, SamplingParams, StructuredOutput
from ponder.strategies import registry
from ponder.strategies.base import StrategyRequest
from ponder.strategies.thinking import BudgetForcingEngine, ThinkingBudget, budget_forcing
from ponder.testing import FakeEngine, RulePRM, TableVerifier, tokenize

THOUGHT = "<think> s1 s2 s3 s4 s5 s6 </think> 42"  # 7 thinking tokens (the tag, six steps), then the answer
PROMPT = Prompt.chat([{"role": "user", "content": "q"}])


def model(prompt: Prompt, params: SamplingParams, index: int) -> str:
    """A thinking model: its own thought; `7` after a thought closed for it; more thought after the cue."""
    prefix = prompt.prefix
    if THOUGHT.startswith(prefix):
        return THOUGHT[len(prefix) :]
    if prefix.endswith("</think>"):
        return " 7"
    if prefix.endswith("Wait"):
        return " s7 </think> 43"
    return " lost"


async def whole_and_streamed(
    budget: ThinkingBudget, params: SamplingParams, n: int = 2, prompt: Prompt = PROMPT, responder=model
):
    engine = FakeEngine(responder)
    samples = await BudgetForcingEngine(engine, budget).generate(prompt, params, n)
    streamed = FakeEngine(responder)
    texts, tokens, finishes = [""] * n, [0] * n, [[] for _ in range(n)]
    async for delta in BudgetForcingEngine(streamed, budget).stream(prompt, params, n):
        texts[delta.index] += delta.text
        tokens[delta.index] += delta.num_tokens
        if delta.finish_reason:
            finishes[delta.index].append(delta.finish_reason)
    assert texts == [s.text for s in samples] and tokens == [s.num_tokens for s in samples]
    assert finishes == [[s.finish_reason] for s in samples]  # one finish per sample, at its very end
    assert streamed.active == 0 and len(streamed.calls) == len(engine.calls)
    return samples, engine


async def test_out_of_thinking_tokens_the_thought_is_closed_and_the_same_sample_answers():
    samples, engine = await whole_and_streamed(ThinkingBudget(3), SamplingParams(max_tokens=20))
    assert [s.text for s in samples] == ["<think> s1 s2</think> 7"] * 2
    assert [s.num_tokens for s in samples] == [4, 4]  # every generated token: 3 thinking, 1 answer
    first, *answers = engine.calls
    assert first[1].token_cap == 3 and "</think>" in first[1].stop and first[2] == 2  # n samples in one call
    assert [c[0].prefix for c in answers] == ["<think> s1 s2</think>"] * 2  # continued, not a new turn
    assert all(c[1].max_tokens == 17 for c in answers)  # the rest of max_tokens


async def test_an_answer_that_closes_the_thought_again_ends_before_the_tag():
    def still_thinking(prompt: Prompt, params: SamplingParams, index: int, again: str = "</think> 9") -> str:
        if prompt.prefix.endswith("</think>"):  # closed mid-step for it, it finishes the step and closes again
            return f" s3 {again}"
        return model(prompt, params, index)

    def reopening(prompt: Prompt, params: SamplingParams, index: int) -> str:
        return still_thinking(prompt, params, index, again="<think> s4")

    closed, _ = await whole_and_streamed(ThinkingBudget(3), SamplingParams(max_tokens=20), responder=still_thinking)
    assert [(s.text, s.finish_reason) for s in closed] == [("<think> s1 s2</think> s3 ", "stop")] * 2  # tag cut off
    opened, _ = await whole_and_streamed(ThinkingBudget(3), SamplingParams(max_tokens=20), responder=reopening)
    assert [s.text for s in opened] == ["<think> s1 s2</think> s3 "] * 2  # nor does a second opening tag get in


async def test_a_thought_within_budget_is_untouched():
    samples, _ = await whole_and_streamed(ThinkingBudget(50), SamplingParams(max_tokens=20))
    assert [(s.text, s.num_tokens, s.finish_reason) for s in samples] == [(THOUGHT, 9, "stop")] * 2


async def test_an_early_end_of_thinking_is_extended_with_the_cue_a_set_number_of_times():
    samples, _ = await whole_and_streamed(ThinkingBudget(None, extensions=1), SamplingParams(max_tokens=40))
    assert samples[0].text == "<think> s1 s2 s3 s4 s5 s6 Wait s7 </think> 7"
    extended, _ = await whole_and_streamed(ThinkingBudget(None, 2, "Wait"), SamplingParams(max_tokens=40))
    assert extended[0].text.count("Wait") == 2


async def test_the_samples_own_token_limit_still_holds():
    samples, _ = await whole_and_streamed(ThinkingBudget(3), SamplingParams(max_tokens=3), n=1)
    assert (samples[0].text, samples[0].num_tokens, samples[0].finish_reason) == ("<think> s1 s2", 3, "length")
    capped, _ = await whole_and_streamed(ThinkingBudget(3), SamplingParams(token_cap=4), n=1)
    assert capped[0].num_tokens <= 4 and capped[0].text.endswith("</think> 7")


async def test_thinking_already_in_the_partial_turn_counts():
    prompt = Prompt.chat([{"role": "user", "content": "q"}], prefix="<think> s1 s2")
    engine = FakeEngine(model)
    forcing = BudgetForcingEngine(engine, ThinkingBudget(4), count_tokens=lambda text: len(tokenize(text)))
    (sample,) = await forcing.generate(prompt, SamplingParams(max_tokens=20))
    assert sample.text == " s3 s4</think> 7" and engine.calls[0][1].token_cap == 2
    assert forcing.forced == 1


def test_no_budget_leaves_the_engine_as_it_is():
    engine = FakeEngine()
    assert budget_forcing(engine, None, None) is engine  # type: ignore[arg-type]
    assert budget_forcing(engine, ThinkingBudget(), None) is engine  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["best_of_n", "self_consistency"])
async def test_every_strategy_samples_through_it_and_usage_counts_every_token(name):
    strategy = registry.get(name).from_request({})
    engine = FakeEngine(model)
    request = StrategyRequest(PROMPT, SamplingParams(max_tokens=20, temperature=0.7))
    forcing = BudgetForcingEngine(engine, ThinkingBudget(3))
    result = await strategy.run(request, forcing, TableVerifier({" 7": 1.0}), Budget(max_samples=4))
    assert result.choices[0].text == "<think> s1 s2</think> 7"
    assert result.spent.tokens == 4 * 4 and result.spent.samples == 4  # forced answers' tokens counted too


async def test_a_step_search_keeps_each_solution_within_its_thinking_budget():
    def steps(prompt: Prompt, params: SamplingParams, index: int) -> str:  # a thought that would go on for long
        return " 9" if prompt.prefix.endswith("</think>") else f"step{index}\n"

    engine = FakeEngine(steps)
    forcing = BudgetForcingEngine(engine, ThinkingBudget(5), count_tokens=lambda text: len(tokenize(text)))
    beam = registry.get("beam_search").from_request({"beam_width": 2, "expansions": 2})
    request = StrategyRequest(PROMPT, SamplingParams(max_tokens=50))
    result = await beam.run(request, forcing, RulePRM(default=0.5), Budget(max_samples=8))
    thought, _, answer = result.choices[0].text.partition("</think>")
    assert len(tokenize(thought)) <= 5 and answer == " 9"  # the prefix's thinking counted, step after step
    assert [call[1].token_cap for call in engine.calls[:3]] == [5, 3, 3]


async def test_constrained_output_is_left_alone():
    engine = FakeEngine(lambda p, s, i: '{"answer": 1, "why": "a long enough explanation"}')
    params = SamplingParams(max_tokens=20, structured=StructuredOutput(json_object=True))
    (sample,) = await BudgetForcingEngine(engine, ThinkingBudget(2)).generate(PROMPT, params)
    assert sample.text.endswith('explanation"}') and len(engine.calls) == 1 and engine.calls[0][1] == params


async def test_an_engine_that_does_not_name_the_stop_string_still_gets_its_answer():
    class Unnamed(FakeEngine):  # some upstream servers report no stop_reason
        async def generate(self, prompt, params, n=1):
            return [dataclasses.replace(s, stop_reason=None) for s in await super().generate(prompt, params, n)]

    (sample,) = await BudgetForcingEngine(Unnamed(model), ThinkingBudget(50)).generate(PROMPT, SamplingParams())
    assert sample.text == THOUGHT
