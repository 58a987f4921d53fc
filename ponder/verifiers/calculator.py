"""A rule-based step verifier: every arithmetic equation a step writes is recomputed exactly, like a calculator tool."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Sequence
from fractions import Fraction

from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, split_completion, split_steps

NEUTRAL = 0.5  # a step with no equation to check: neither evidence for nor against the solution
MAX_DIGITS = 60  # longer numbers are not arithmetic a reasoning trace writes; refuse to compute them
MAX_EXPONENT = 64
MAX_POWER_BITS = 100_000  # (9^64)^64^... grows past any budget: refuse a power whose result would be larger
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# ``lhs = rhs`` where both sides are plain arithmetic: numbers, + - * / ^ ×, parentheses and spaces
_EQUATION = re.compile(r"([0-9.+\-*/×^()\s]*\d[0-9.+\-*/×^()\s]*)=\s*(-?[0-9.]+)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_SYMBOLS = str.maketrans({"÷": "/", "−": "-", "·": "*"})
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


class _Uncheckable(ValueError):
    """The expression is not plain arithmetic this verifier computes."""


def evaluate(expression: str) -> Fraction:
    """The exact value of a plain arithmetic expression (integers, decimals, + - * / ^ and parentheses)."""
    text = expression.replace("×", "*").replace("^", "**").strip()
    if not text or any(len(n) > MAX_DIGITS for n in _NUMBER.findall(text)):
        raise _Uncheckable(expression)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _Uncheckable(expression) from None
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _Uncheckable("division by zero")
        if isinstance(node.op, ast.Pow) and (right.denominator != 1 or abs(right) > MAX_EXPONENT):
            raise _Uncheckable("exponent")
        if isinstance(node.op, ast.Pow):
            bits = max(left.numerator.bit_length(), left.denominator.bit_length())
            if bits * abs(right) > MAX_POWER_BITS:
                raise _Uncheckable("power too large")
        return Fraction(_BINARY[type(node.op)](left, right))
    raise _Uncheckable(ast.dump(node))


def normalise(text: str) -> str:
    """Thousands separators dropped (``1,000`` is 1000) and the typographic operators made ASCII."""
    return _THOUSANDS.sub("", text.translate(_SYMBOLS))


def holds(value: Fraction, written: str) -> bool:
    """Whether ``written`` states ``value``: exactly for an integer, to its last decimal place for a decimal
    (``1/3 = 0.333`` holds, ``1/3 = 0.34`` does not)."""
    decimals = len(written.partition(".")[2])
    return abs(value - Fraction(written)) <= (Fraction(1, 2 * 10**decimals) if decimals else 0)


def check_equations(step: str) -> list[bool]:
    """For every ``expression = number`` in ``step`` that is plain arithmetic: whether it holds."""
    results = []
    for match in _EQUATION.finditer(normalise(step)):
        lhs, rhs = match.group(1), match.group(2).rstrip(".")
        if not re.search(r"[+\-*/×^]", lhs.strip().lstrip("-")):
            continue  # "x = 5" or "= 12": a statement, not a computation
        try:
            results.append(holds(evaluate(lhs), rhs))
        except (_Uncheckable, ValueError, ZeroDivisionError, OverflowError):
            continue
    return results


def step_score(step: str) -> float:
    """1.0 when every equation of the step holds, 0.0 when one does not, ``NEUTRAL`` with none to check."""
    checks = check_equations(step)
    return NEUTRAL if not checks else float(all(checks))


def _last_value(steps: Sequence[str]) -> str | None:
    for step in reversed(steps):
        matches = list(_EQUATION.finditer(normalise(step)))
        if matches:
            return matches[-1].group(2).rstrip(".")
    return None


class Calculator:
    """Checks the arithmetic of reasoning steps and that the visible answer follows from them; needs no model.

    Step score: 1.0 when every equation in the step (``467+914=1381``) is exactly right, 0.0 when one is wrong,
    0.5 when the step has none. Answer score: the minimum over its steps and an agreement term (1.0 when the
    visible answer is the last computed value, 0.0 when it differs, 0.5 when either is missing). It cannot see a
    wrong plan (a term left out, a wrong number copied from the question): only wrong arithmetic.
    """

    step_level = True

    kind = "calculator"
    source = None

    def __init__(
        self, name: str = "calculator", *, separator: str = "\n", think_tags: Sequence[str] = THINK_TAGS
    ) -> None:
        self.name = name
        self.separator = separator
        self.think_tags = tuple(think_tags)

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [[step_score(step) for step in steps] for steps in solutions]

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        """The minimum of the step scores and the answer's agreement with the last value; ``reference`` unused."""
        return [self._answer_score(answer) for answer in answers]

    def _answer_score(self, answer: str) -> float:
        steps = split_steps(answer, self.separator, self.think_tags)
        _, content, closed = split_completion(answer, self.think_tags)
        last, given = _last_value(steps), _NUMBER.findall(normalise(content))
        if not closed:
            agreement = 0.0  # still thinking: no answer was given
        elif last is None or not given:
            agreement = NEUTRAL
        else:
            agreement = float(Fraction(given[-1]) == Fraction(last))
        return min([step_score(s) for s in steps] + [agreement])

    def __repr__(self) -> str:
        return f"Calculator(name={self.name!r})"
