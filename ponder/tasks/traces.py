"""Reasoning traces: render the gold trace, parse a model output into steps and answer, check steps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN
from ponder.tasks.problems import Problem, is_correct

STEP_SEPARATOR = "\n"  # every step line ends with it; the PRM scores at each one
ANSWER_FORMAT = "final_number"

_STEP = re.compile(r"^(-?\d+)([+\-*])(\d+)=(-?\d+)$")


def _chain_steps(expression: str) -> list[str]:
    """Running sums: ``a+b=s1``, ``s1-c=s2``, ..."""
    parts = expression.split()
    total = int(parts[0])
    steps = []
    for op, term in zip(parts[1::2], parts[2::2], strict=True):
        new = total + int(term) if op == "+" else total - int(term)
        steps.append(f"{total}{op}{term}={new}")
        total = new
    return steps


def _product_steps(expression: str) -> list[str]:
    """One partial product per non-zero digit of the second factor, then their running sum."""
    a, b = (int(x) for x in expression.split(" * "))
    partials = [int(d) * 10**k for k, d in enumerate(reversed(str(b))) if d != "0"] or [0]
    steps = [f"{a}*{p}={a * p}" for p in partials]
    total = a * partials[0]
    for p in partials[1:]:
        steps.append(f"{total}+{a * p}={total + a * p}")
        total += a * p
    return steps


def gold_steps(problem: Problem) -> list[str]:
    """The reference steps of ``problem``, one equation each, without separators."""
    if problem.task == "chain_sum":
        return _chain_steps(problem.expression)
    if problem.task == "products":
        return _product_steps(problem.expression)
    raise ValueError(f"no trace format for task {problem.task!r}")


def render_trace(problem: Problem) -> str:
    """The gold assistant turn: ``<think>`` + one step per line + ``</think>`` + the final number."""
    return THINK_OPEN + "".join(s + STEP_SEPARATOR for s in gold_steps(problem)) + THINK_CLOSE + problem.answer


def sft_messages(problem: Problem) -> list[dict[str, str]]:
    """The training chat: the question, then the gold trace as the assistant turn."""
    return [*problem.prompt_messages(), {"role": "assistant", "content": render_trace(problem)}]


@dataclass
class ParsedOutput:
    """A model output split into reasoning steps and the visible final answer."""

    steps: list[str] = field(default_factory=list)
    answer: str | None = None  # None when the think block never closed
    closed: bool = False  # whether ``</think>`` was seen


def parse_output(text: str) -> ParsedOutput:
    """Split ``[<think>]step\\nstep\\n</think>answer`` (the opening tag is optional: the prompt may have opened it)."""
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN) :]
    reasoning, closed, answer = body.partition(THINK_CLOSE)
    steps = [line.strip() for line in reasoning.split(STEP_SEPARATOR) if line.strip()]
    return ParsedOutput(steps=steps, answer=answer.strip() if closed else None, closed=bool(closed))


def check_step(step: str) -> bool:
    """Whether a step is a true equation ``int op int = int`` (op in + - *); anything else is False."""
    match = _STEP.match(step.replace(" ", ""))
    if not match:
        return False
    left, op, right, result = match.groups()
    a, b = int(left), int(right)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return value == int(result)


def step_labels(problem: Problem, steps: list[str]) -> list[bool]:
    """Exact labels: a step is good when it is the gold step at its position and every step before it is good.

    A true equation on wrong operands (a copied-wrong term, a carried-forward mistake) is therefore bad.
    """
    gold = gold_steps(problem)
    labels, ok = [], True
    for i, step in enumerate(steps):
        ok = ok and i < len(gold) and step.replace(" ", "") == gold[i] and check_step(step)
        labels.append(ok)
    return labels


def grade_output(problem: Problem, text: str) -> bool:
    """Whether a whole model output ends in the right final answer (graded by reasoning-gym)."""
    return is_correct(problem, parse_output(text).answer)
