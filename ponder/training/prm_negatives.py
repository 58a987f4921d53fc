"""Hard negatives for the PRM: gold traces with one step corrupted and every later step carried forward from it."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from ponder.tasks import Problem, gold_steps, step_labels

KINDS = ("result", "operand", "skip")
_SHAPE = re.compile(r"^-?\d+[+\-*]\d+=-?\d+$")


@dataclass(frozen=True)
class _Step:
    """One trace step as a computation: an operand is a constant (int) or the result of an earlier step (str `#j`)."""

    left: int | str
    op: str
    right: int | str


def _plan(problem: Problem) -> list[_Step]:
    """The computation behind ``gold_steps`` (same order, same operands)."""
    if problem.task == "chain_sum":
        parts = problem.expression.split()
        plan = [_Step(int(parts[0]), parts[1], int(parts[2]))]
        for k, (op, term) in enumerate(zip(parts[3::2], parts[4::2], strict=True)):
            plan.append(_Step(f"#{k}", op, int(term)))
        return plan
    if problem.task == "products":
        a, b = (int(x) for x in problem.expression.split(" * "))
        partials = [int(d) * 10**k for k, d in enumerate(reversed(str(b))) if d != "0"] or [0]
        plan = [_Step(a, "*", p) for p in partials]
        for j in range(1, len(partials)):
            plan.append(_Step("#0" if j == 1 else f"#{len(plan) - 1}", "+", f"#{j}"))
        return plan
    raise ValueError(f"no trace format for task {problem.task!r}")


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _run(plan: list[_Step], overrides: dict[int, int] | None = None) -> list[str]:
    """Render the steps, computing each result from the (possibly wrong) earlier ones; ``overrides`` fixes results."""
    values: list[int] = []
    steps = []
    for i, s in enumerate(plan):
        a = values[int(s.left[1:])] if isinstance(s.left, str) else s.left
        b = values[int(s.right[1:])] if isinstance(s.right, str) else s.right
        value = (overrides or {}).get(i, _apply(s.op, a, b))
        values.append(value)
        steps.append(f"{a}{s.op}{b}={value}")
    return steps


def _perturb(value: int, rng: random.Random) -> int:
    """A plausible slip on a number: off by one or ten, two adjacent digits swapped, a digit dropped or doubled."""
    sign, digits = ("-" if value < 0 else ""), str(abs(value))
    how = rng.choice(("pm1", "pm10", "swap", "drop", "double", "digit"))
    if how == "pm1":
        return value + rng.choice((-1, 1))
    if how == "pm10":
        return value + rng.choice((-10, 10))
    k = rng.randrange(len(digits))
    if how == "swap" and len(digits) > 1:
        k = min(k, len(digits) - 2)
        digits = digits[:k] + digits[k + 1] + digits[k] + digits[k + 2 :]
    elif how == "drop" and len(digits) > 1:
        digits = digits[:k] + digits[k + 1 :]
    elif how == "double":
        digits = digits[:k] + digits[k] + digits[k:]
    else:
        digits = digits[:k] + str((int(digits[k]) + rng.randint(1, 9)) % 10) + digits[k + 1 :]
    return int(sign + digits)


def _question_numbers(problem: Problem) -> list[int]:
    return [int(t) for t in problem.expression.replace("*", " ").split() if t.lstrip("-").isdigit()]


def corrupt(problem: Problem, rng: random.Random, kind: str | None = None, at: int | None = None) -> list[str] | None:
    """Gold steps with one mistake at step ``at`` (random when None), later steps carried forward consistently.

    ``result``: that step's result is wrong (a false equation). ``operand``: it uses a wrong constant (another number
    of the question, or a slip on the right one) but computes correctly. ``skip``: it leaves out its term (chain sums)
    or partial product (products) altogether. None when the draw gives no valid different trace.
    """
    plan = _plan(problem)
    kind = kind or rng.choice(KINDS)
    at = rng.randrange(len(plan)) if at is None else at
    if kind == "result":
        right = _run(plan)[at].split("=")[1]
        wrong = _perturb(int(right), rng)
        steps = _run(plan, {at: wrong})
    elif kind == "operand":
        s = plan[at]
        field = "right" if isinstance(s.right, int) else "left" if isinstance(s.left, int) else None
        if field is None:  # a running sum of partial products: both operands are earlier results
            return corrupt(problem, rng, "result", at)
        old = getattr(s, field)
        others = [n for n in _question_numbers(problem) if n != old]
        new = rng.choice(others) if others and rng.random() < 0.5 else abs(_perturb(old, rng))
        plan = [*plan[:at], _Step(**{**s.__dict__, field: new}), *plan[at + 1 :]]
        steps = _run(plan)
    elif kind == "skip":
        if problem.task == "chain_sum":
            if len(plan) < 2:
                return None
            # leave out the term of step `at`: the step after it takes over its left operand
            if at == 0:
                first = plan[0]
                nxt = [_Step(first.left, plan[1].op, plan[1].right)] + [
                    _Step(f"#{int(s.left[1:]) - 1}", s.op, s.right) for s in plan[2:]
                ]
            else:
                nxt = plan[:at] + [_Step(f"#{int(s.left[1:]) - 1}", s.op, s.right) for s in plan[at + 1 :]]
            steps = _run(nxt)
        else:
            partials = [s for s in plan if s.op == "*"]
            if len(partials) < 2:
                return None
            at %= len(partials)
            keep = [s for j, s in enumerate(partials) if j != at]
            nxt = list(keep)
            for j in range(1, len(keep)):
                nxt.append(_Step("#0" if j == 1 else f"#{len(nxt) - 1}", "+", f"#{j}"))
            steps = _run(nxt)
    else:
        raise ValueError(f"unknown corruption kind {kind!r}")
    if steps == gold_steps(problem) or not all(_well_formed(x) for x in steps):
        return None
    return steps


def _well_formed(step: str) -> bool:
    """``int op nonneg-int = int``: the shape the policy writes (a negative right operand never occurs)."""
    return _SHAPE.match(step) is not None


def hard_negative_rows(
    records: list[dict[str, Any]], per_trace: int, seed: int = 0
) -> list[tuple[list[dict], list[str], list[float]]]:
    """For every distinct problem of ``records``: the gold trace and ``per_trace`` corrupted copies, exact labels."""
    problems: dict[tuple[str, int], Problem] = {}
    for r in records:
        problems.setdefault((r["split"], r["seed"]), Problem.from_record(r))
    out = []
    for problem in problems.values():
        rng = random.Random(f"{seed}:{problem.split}:{problem.seed}")
        gold = gold_steps(problem)
        messages = problem.prompt_messages()
        out.append((messages, gold, [1.0] * len(gold)))
        seen = {tuple(gold)}
        for _ in range(per_trace * 4):  # a few draws give nothing new (single-step skips, repeats)
            if len(seen) > per_trace:
                break
            steps = corrupt(problem, rng)
            if steps is None or tuple(steps) in seen:
                continue
            labels = step_labels(problem, steps)
            if all(labels):  # a gold prefix (the last term skipped): no step to call bad
                continue
            seen.add(tuple(steps))
            out.append((messages, steps, [float(y) for y in labels]))
    return out
