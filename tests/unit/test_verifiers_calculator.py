"""The calculator verifier: exact arithmetic per step, and the answer's agreement with the last computed value."""

from __future__ import annotations

import pytest

from ponder.verifiers.base import is_step_verifier
from ponder.verifiers.calculator import NEUTRAL, Calculator, check_equations, evaluate
from ponder.verifiers.registry import VerifierSet


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("467+914=1381", [True]),
        ("467+914=1382", [False]),
        ("-36-31=-67", [True]),
        ("86*5=430", [True]),
        ("86*5=420", [False]),
        ("So (3 + 4) × 2 = 14 and 7/2 = 3.5", [True, True]),
        ("2^10 = 1024, 2^10 = 1000", [True, False]),
        ("x = 5", []),
        ("the answer is 12", []),
        ("1/0 = 3", []),
        ("9" * 80 + "+1=1", []),
        ("1,000 + 2,500 = 3,500", [True]),
        ("1,000 + 2,500 = 3,600", [False]),
        ("12 ÷ 4 = 3 and 6 − 8 = −2", [True, True]),
        ("1/3 = 0.333", [True]),
        ("1/3 = 0.34", [False]),
        ("7/2 = 3", [False]),
        ("The total is 2+2=4.", [True]),
    ],
)
def test_check_equations(step, expected):
    assert check_equations(step) == expected


def test_evaluate_refuses_what_is_not_plain_arithmetic():
    assert evaluate("(1+2)*3") == 9
    for text in ("__import__('os')", "2**1000", "a+1", "", "((((9^64)^64)^64)^64)^64"):
        with pytest.raises(ValueError):
            evaluate(text.replace("**", "^"))


async def test_step_and_answer_scores():
    calc = Calculator()
    assert is_step_verifier(calc)
    steps = await calc.score_steps("q", [["20-56=-36", "-36-31=-67"], ["20-56=-36", "-36-31=-66"], ["Let me add."]])
    assert steps == [[1.0, 1.0], [1.0, 0.0], [NEUTRAL]]
    good = "<think>22+14=36\n36-16=20\n</think>20"
    wrong_step = "<think>22+14=39\n39-16=23\n</think>23"
    disagrees = "<think>22+14=36\n36-16=20\n</think>21"
    unfinished = "<think>22+14=36\n36-16="
    assert await calc.score("q", [good, wrong_step, disagrees, unfinished, "20"]) == [1.0, 0.0, 0.0, 0.0, NEUTRAL]
    thousands = "<think>1,200+300=1,500\n</think>The answer is 1,500."
    assert await calc.score("q", [thousands]) == [1.0]


def test_loaded_by_default_and_by_spec():
    vset = VerifierSet.from_specs(["calc=calculator"])
    assert vset.get("calc").kind == "calculator"
