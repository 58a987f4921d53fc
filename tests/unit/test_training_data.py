"""The arithmetic data module: level and seed tables, generation, traces, step parsing and checking, grading."""

from __future__ import annotations

import itertools
import re

import pytest

from ponder.tasks import (
    LEVELS,
    SPLITS,
    TASKS,
    Problem,
    check_step,
    generate_problems,
    gold_steps,
    grade,
    grade_output,
    is_correct,
    parse_output,
    render_trace,
    sft_messages,
    step_labels,
)
from ponder.tasks.levels import check_levels, split_range


def _problem(task: str, expression: str, answer: str, level: int = 1) -> Problem:
    return Problem("test", 0, level, task, f"question {expression}", answer, expression)


# -- tables -------------------------------------------------------------------------------------------------------


def test_level_table_covers_the_issue_ranges():
    assert sorted(LEVELS) == [1, 2, 3, 4, 5]
    chain = [s for specs in LEVELS.values() for s in specs if s.task == "chain_sum"]
    products = [s for specs in LEVELS.values() for s in specs if s.task == "products"]
    assert min(s.terms[0] for s in chain) == 2 and max(s.terms[1] for s in chain) == 6
    assert {d for s in chain for d in s.digits} == {1, 2, 3}
    assert {s.digits[0] for s in products} == {1, 2, 3} and {s.digits[1] for s in products} == {1, 2}
    assert all(s.terms == (2, 2) for s in products)
    for specs in LEVELS.values():  # every level has both tasks
        assert sorted(s.task for s in specs) == sorted(TASKS)


def test_levels_get_harder():
    def work(level: int) -> tuple[int, int]:
        chain = next(s for s in LEVELS[level] if s.task == "chain_sum")
        prod = next(s for s in LEVELS[level] if s.task == "products")
        return chain.terms[1] * chain.digits[1], prod.digits[0] * prod.digits[1]

    for lower, higher in zip(range(1, 5), range(2, 6), strict=True):
        assert work(lower) <= work(higher) and work(lower) != work(higher)


def test_seed_ranges_are_disjoint():
    ranges = sorted(SPLITS.values(), key=lambda r: r.start)
    assert set(SPLITS) == {"train", "validation", "test"}
    for a, b in itertools.pairwise(ranges):
        assert a.stop <= b.start
    seen: dict[int, str] = {}
    for split in SPLITS:
        for p in generate_problems(split, 50):
            assert p.seed in SPLITS[split]
            assert seen.setdefault(p.seed, split) == split


def test_bad_levels_and_splits_are_refused():
    with pytest.raises(ValueError, match="valid levels"):
        check_levels([0, 6])
    with pytest.raises(ValueError, match="valid splits"):
        split_range("dev")
    with pytest.raises(ValueError, match="valid tasks"):
        generate_problems("train", 3, tasks=["division"])
    with pytest.raises(ValueError, match="do not fit"):
        generate_problems("test", len(SPLITS["test"]) + 1)


# -- generation ---------------------------------------------------------------------------------------------------


def test_generation_is_deterministic_balanced_and_records_level():
    a = generate_problems("test", 40)
    assert a == generate_problems("test", 40)
    assert [p.level for p in a[:10]] == [1, 2, 3, 4, 5] * 2
    assert {(p.level, p.task) for p in a} == {(lv, t) for lv in LEVELS for t in TASKS}
    assert generate_problems("test", 5, offset=10) == a[10:15]
    assert [p.level for p in generate_problems("train", 6, levels=[4, 5, 5])] == [4, 5, 5] * 2
    assert {p.task for p in generate_problems("train", 6, tasks=["products"])} == {"products"}


def test_problems_match_their_level_spec_and_reasoning_gym_wording():
    for p in generate_problems("validation", 200):
        spec = next(s for s in LEVELS[p.level] if s.task == p.task)
        if p.task == "chain_sum":
            assert p.question == f"State the final answer to the following arithmetic problem: {p.expression} ="
            terms = p.expression.split()[::2]
            assert spec.terms[0] <= len(terms) <= spec.terms[1]
            assert all(spec.digits[0] <= len(t) <= spec.digits[1] for t in terms)
            assert set(p.expression.split()[1::2]) <= {"+", "-"}
        else:
            assert p.question == (
                f"Solve the following multiplication: {p.expression}. Give only the result as your final answer."
            )
            a, b = p.expression.split(" * ")
            assert (len(a), len(b)) == spec.digits
            assert int(p.answer) == int(a) * int(b)


def test_same_digit_products_are_exactly_reasoning_gym():
    from reasoning_gym.arithmetic.products import ProductsConfig, ProductsDataset

    level = next(lv for lv, specs in LEVELS.items() if any(s.task == "products" and s.digits == (2, 2) for s in specs))
    ours = [p for p in generate_problems("test", 40, levels=[level], tasks=["products"])]
    theirs = ProductsDataset(ProductsConfig(min_digits=2, max_digits=2, seed=0, size=1))
    for p in ours:
        assert theirs[p.seed]["question"] == p.question


def test_chain_sum_includes_subtraction_and_negative_results():
    problems = generate_problems("train", 500, tasks=["chain_sum"])
    assert any("-" in p.expression for p in problems)
    assert any(int(p.answer) < 0 for p in problems)


def test_record_round_trip():
    p = generate_problems("test", 1)[0]
    assert Problem.from_record({**p.to_record(), "extra": 1}) == p


# -- traces -------------------------------------------------------------------------------------------------------


def test_chain_trace_is_running_sums():
    p = _problem("chain_sum", "467 + 914 - 1400 + 5", "-14")
    assert gold_steps(p) == ["467+914=1381", "1381-1400=-19", "-19+5=-14"]
    assert render_trace(p) == "<think>467+914=1381\n1381-1400=-19\n-19+5=-14\n</think>-14"


def test_product_trace_is_partial_products_then_their_sum():
    p = _problem("products", "467 * 38", "17746")
    assert gold_steps(p) == ["467*8=3736", "467*30=14010", "3736+14010=17746"]
    assert gold_steps(_problem("products", "57 * 8", "456")) == ["57*8=456"]
    assert gold_steps(_problem("products", "12 * 40", "480")) == ["12*40=480"]
    assert gold_steps(_problem("products", "7 * 0", "0")) == ["7*0=0"]


def test_every_gold_trace_is_correct_checkable_and_parses_back():
    for p in generate_problems("train", 300):
        trace = render_trace(p)
        parsed = parse_output(trace)
        assert parsed.steps == gold_steps(p)
        assert parsed.answer == p.answer and parsed.closed
        assert all(check_step(s) for s in parsed.steps)
        assert all(step_labels(p, parsed.steps))
        assert grade_output(p, trace)
        assert re.fullmatch(r"<think>([^\n]+\n)+</think>-?\d+", trace)
        messages = sft_messages(p)
        assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"] == trace


# -- parsing and checking ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps", "answer", "closed"),
    [
        ("<think>1+2=3\n3*4=12\n</think>12", ["1+2=3", "3*4=12"], "12", True),
        ("  <think>1+2=3\n</think> 3 ", ["1+2=3"], "3", True),
        ("1+2=3\n</think>3", ["1+2=3"], "3", True),  # the prompt opened the tag
        ("<think>1+2=3\n3+4=", ["1+2=3", "3+4="], None, False),  # cut off
        ("<think></think>5", [], "5", True),
        ("", [], None, False),
    ],
)
def test_parse_output(text, steps, answer, closed):
    parsed = parse_output(text)
    assert (parsed.steps, parsed.answer, parsed.closed) == (steps, answer, closed)


@pytest.mark.parametrize(
    ("step", "ok"),
    [
        ("467+914=1381", True),
        ("467+914=1380", False),
        ("1381-1400=-19", True),
        ("-19+5=-14", True),
        ("-19-5=-24", True),
        ("467*30=14010", True),
        ("467*30=1401", False),
        ("3736 + 14010 = 17746", True),
        ("7*8", False),
        ("the answer is 3", False),
        ("", False),
        ("1+2+3=6", False),
    ],
)
def test_check_step(step, ok):
    assert check_step(step) is ok


def test_step_labels_carry_mistakes_forward():
    p = _problem("chain_sum", "10 + 20 + 30 + 40", "100")
    assert step_labels(p, ["10+20=30", "30+30=60", "60+40=100"]) == [True, True, True]
    # second step wrong; the third is a true equation but continues from the wrong sum
    assert step_labels(p, ["10+20=30", "30+30=61", "61+40=101"]) == [True, False, False]
    # a true equation on a wrongly copied term is wrong
    assert step_labels(p, ["10+21=31", "31+30=61"]) == [False, False]
    assert step_labels(p, ["10+20=30", "30+30=60", "60+40=100", "100+0=100"]) == [True, True, True, False]


# -- grading -------------------------------------------------------------------------------------------------------


def test_grading_is_reasoning_gyms_score_answer():
    p = _problem("products", "467 * 38", "17746")
    assert grade(p, "17746") == 1.0 and is_correct(p, "17746")
    assert grade(p, "17,746") == 1.0  # reasoning-gym strips commas
    assert grade(p, "17745") == 0.0
    assert grade(p, None) == 0.0 and not is_correct(p, None)
    assert 0 < grade(p, "17746 is it") < 1  # reasoning-gym's partial credit is not "correct"
    assert not is_correct(p, "17746 is it")
    neg = _problem("chain_sum", "1 - 5", "-4")
    assert is_correct(neg, "-4") and not is_correct(neg, "4")


def test_grade_output_needs_a_closed_think_block():
    p = _problem("chain_sum", "1 + 2", "3")
    assert grade_output(p, "<think>1+2=3\n</think>3")
    assert not grade_output(p, "<think>1+2=3\n")
    assert not grade_output(p, "<think>1+2=4\n</think>4")
