"""Natural phrasings, off-topic prompts, mixed-digit sums and the training mix built from them."""

from __future__ import annotations

import random
import re

import pytest

from ponder.tasks import generate_problems, grade_output, parse_output, render_trace
from ponder.tasks.phrasings import (
    HELD_OUT_INSTRUCTIONS,
    HELD_OUT_OFF_TOPIC,
    HELD_OUT_QUESTIONS,
    HELD_OUT_SYSTEM,
    REFUSAL,
    TRAILING_INSTRUCTIONS,
    TRAIN_OFF_TOPIC,
    TRAIN_QUESTIONS,
    TRAIN_SYSTEM,
    expression_text,
    off_topic_prompt,
    rephrase,
    two_term_problem,
    wide_question,
    wide_system_prompt,
)
from ponder.training.chat_mix import ChatMix, extra_seeds, mixed_chats, refusal_turn
from ponder.training.phrasing_eval import arithmetic_sets, is_refusal, well_formed

_NUMBER = re.compile(r"\d+")


def test_held_out_wordings_never_reach_training():
    assert not set(HELD_OUT_QUESTIONS) & set(TRAIN_QUESTIONS)
    assert not set(HELD_OUT_OFF_TOPIC) & set(TRAIN_OFF_TOPIC)
    assert not set(HELD_OUT_SYSTEM) & set(TRAIN_SYSTEM)
    assert not set(HELD_OUT_INSTRUCTIONS) & set(TRAILING_INSTRUCTIONS)


def test_wide_system_prompts_are_many_and_never_held_out():
    rng = random.Random(0)
    drawn = [wide_system_prompt(rng) for _ in range(2000)]
    assert len(set(drawn)) > 500 and all(drawn)
    assert not set(drawn) & set(HELD_OUT_SYSTEM)
    held_out_words = {"careful", "calculator", "reply"}
    assert not any(held_out_words & set(re.findall(r"[a-z]+", p.lower())) for p in drawn)


def test_wide_questions_are_many_hold_the_expression_once_and_never_held_out():
    rng = random.Random(0)
    drawn = [wide_question(rng) for _ in range(5000)]
    assert len(set(drawn)) > 1000 and all(q.count("{e}") == 1 for q in drawn)
    assert not set(drawn) & set(HELD_OUT_QUESTIONS)
    held_out_cues = ("figure", "determine", "help me", "equals what", "so what", "hi!", "get for")
    assert not any(cue in q.lower() for q in drawn for cue in held_out_cues)


def test_the_wide_mix_asks_half_its_natural_questions_in_composed_wordings():
    problems = generate_problems("train", 400)
    narrow = mixed_chats(problems, "train", ChatMix(natural=1.0))
    wide = mixed_chats(problems, "train", ChatMix(natural=1.0, wide_questions=True))
    fixed = {t.split("{e}")[0] for t in TRAIN_QUESTIONS}
    composed = [c[-2]["content"] for c in wide if not any(c[-2]["content"].startswith(f) for f in fixed if f)]
    assert 100 < len(composed) < 300
    assert [c[-1] for c in wide] == [c[-1] for c in narrow]  # the same answers
    for chat, problem in zip(wide, problems, strict=False):
        assert parse_output(chat[-1]["content"]).answer == problem.answer


def test_instructions_follow_the_asked_share_of_natural_questions_and_leave_the_rest_as_before():
    problems = generate_problems("train", 400)
    plain = mixed_chats(problems, "train", ChatMix(natural=0.5, wide_questions=True))
    instructed = mixed_chats(problems, "train", ChatMix(natural=0.5, wide_questions=True, instruction=0.5))
    changed = [(a, b) for a, b in zip(plain, instructed, strict=True) if a != b]
    assert 60 < len(changed) < 140  # about half of the ~200 natural questions
    for before, after in changed:
        question, added = before[-2]["content"], after[-2]["content"]
        assert added.startswith(question) and added[len(question) + 1 :] in TRAILING_INSTRUCTIONS
        assert after[-1] == before[-1]  # the same answer
    assert all(not c[-2]["content"].endswith(HELD_OUT_INSTRUCTIONS) for c in instructed)


def test_the_phrasing_eval_asks_with_held_out_instructions():
    sets = arithmetic_sets(20)
    held_out, _ = sets["held_out_phrasings"]
    instructed, system = sets["held_out_phrasings_with_instruction"]
    assert system is None
    for plain, asked in zip(held_out, instructed, strict=True):
        assert asked.question[len(plain.question) + 1 :] in HELD_OUT_INSTRUCTIONS and asked.answer == plain.answer


def test_the_wide_mix_opens_its_system_chats_with_composed_prompts():
    problems = generate_problems("train", 200)
    narrow = mixed_chats(problems, "train", ChatMix(system=0.5))
    wide = mixed_chats(problems, "train", ChatMix(system=0.5, wide_system=True))
    systems = [c[0]["content"] for c in wide if c[0]["role"] == "system"]
    assert 60 < len(systems) < 140 and len(set(systems)) > 50
    assert {c[0]["content"] for c in narrow if c[0]["role"] == "system"} <= set(TRAIN_SYSTEM)
    assert [c[-2:] for c in wide] == [c[-2:] for c in narrow]  # the same questions and answers


@pytest.mark.parametrize("seed", range(30))
def test_rephrasing_keeps_the_numbers_in_order_and_the_answer(seed):
    problem = generate_problems("test", 30)[seed]
    asked = rephrase(problem, random.Random(seed))
    assert asked.answer == problem.answer and asked.expression == problem.expression
    assert asked.question != problem.question
    assert _NUMBER.findall(asked.question) == _NUMBER.findall(problem.expression)
    assert grade_output(asked, render_trace(problem))  # graded as before: the gold trace still scores


def test_expression_styles_cover_compact_spaced_words_and_x():
    seen = {expression_text("25 * 4", random.Random(i)) for i in range(200)}
    assert {"25*4", "25 * 4", "25 times 4", "25x4"} <= seen


def test_two_term_problems_mix_digit_counts_and_are_graded_right():
    problems = [two_term_problem("test", s) for s in extra_seeds("test", 400)]
    sums = [p for p in problems if "*" not in p.expression]
    widths = {tuple(len(t) for t in p.expression.split()[::2]) for p in sums}
    assert {(1, 2), (2, 1), (1, 1), (2, 2)} <= widths
    products = [p.expression for p in problems if "*" in p.expression]
    assert 40 < len(products) < 120
    assert {len(e.split()[0]) for e in products} == {1, 2}  # the short factor first, too
    for p in problems:
        a, op, b = p.expression.split()
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert int(p.answer) == value
        assert grade_output(p, render_trace(p))


def test_off_topic_prompts_hold_no_arithmetic_expression():
    for i in range(300):
        text = off_topic_prompt(random.Random(i))
        assert not re.search(r"\d\s*[-+*x]\s*\d", text), text


def test_extra_seeds_stay_inside_their_split_and_clear_of_generated_ones():
    seeds = extra_seeds("train", 1000)
    assert min(seeds) >= 1_000_000 and max(seeds) < 100_000_000
    assert not set(extra_seeds("validation", 10)) & set(seeds)


def test_mix_is_deterministic_and_holds_the_asked_fractions():
    problems = generate_problems("train", 400)
    mix = ChatMix(natural=0.5, system=0.2, two_term=0.25, off_topic=0.1)
    chats = mixed_chats(problems, "train", mix)
    assert chats == mixed_chats(problems, "train", mix)
    assert len(chats) == 400 + 100 + 40
    refusals = [c for c in chats if c[-1]["content"] == refusal_turn()]
    assert len(refusals) == 40
    users = [c[-2]["content"] for c in chats[:400]]
    natural = sum(not u.startswith(("State the final", "Solve the following")) for u in users)
    assert 150 < natural < 250
    systems = sum(c[0]["role"] == "system" for c in chats)
    assert 70 < systems < 150
    assert all(c[-1]["content"] == render_trace(p) for c, p in zip(chats, problems, strict=False))


def test_no_mix_gives_reasoning_gym_chats_only():
    problems = generate_problems("train", 50)
    chats = mixed_chats(problems, "train", ChatMix())
    assert chats == [
        [{"role": "user", "content": p.question}, {"role": "assistant", "content": render_trace(p)}] for p in problems
    ]


def test_fractions_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="--off-topic-fraction"):
        ChatMix(off_topic=1.5).check()
    with pytest.raises(ValueError, match="--natural-fraction"):
        ChatMix(natural=-0.1).check()
    with pytest.raises(ValueError, match="--instruction-fraction"):
        ChatMix(instruction=2.0).check()


def test_refusal_turn_is_a_closed_empty_think_block_then_the_refusal():
    turn = refusal_turn()
    assert well_formed(turn) and is_refusal(turn)
    parsed = parse_output(turn)
    assert parsed.steps == [] and parsed.answer == REFUSAL
    assert not well_formed("1+2=3\n</think>3") and not is_refusal("<think>1+2=3\n</think>3")


def test_a_later_stage_with_a_data_offset_sees_none_of_the_earlier_stages_extras():
    from ponder.training.common import TrainingInputError
    from ponder.training.sft import check_args, training_rows
    from ponder.training.sft_config import SFTArgs

    flags = {"output_dir": "unused", "eval_size": 0, "two_term_fraction": 0.8, "off_topic_fraction": 0.5}
    first = training_rows(SFTArgs(train_size=40, **flags))
    later = training_rows(SFTArgs(train_size=40, data_offset=40, **flags))
    assert later[2]["train"]["seeds"] == [40, 80]
    extras = {c[-2]["content"] for c in first[0][40:]}  # two-term problems and off-topic prompts
    assert len({c[-2]["content"] for c in later[0][40:]} & extras) < 5  # only chance repeats of a small space
    with pytest.raises(TrainingInputError, match="--data-offset"):
        check_args(SFTArgs(data_offset=-1, **flags))
