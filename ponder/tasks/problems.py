"""Arithmetic problems drawn from reasoning-gym, worded and graded exactly as reasoning-gym does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from ponder.tasks.levels import LEVELS, TASKS, Spec, check_levels, split_range


@dataclass(frozen=True)
class Problem:
    """One question with its reference answer, its difficulty level and where it came from."""

    split: str
    seed: int
    level: int
    task: str
    question: str
    answer: str
    expression: str

    def entry(self) -> dict[str, Any]:
        """The reasoning-gym entry that its ``score_answer`` grades against."""
        return {"question": self.question, "answer": self.answer, "metadata": {"expression": self.expression}}

    def prompt_messages(self) -> list[dict[str, str]]:
        """The chat a client sends: the question as the only user turn."""
        return [{"role": "user", "content": self.question}]

    def to_record(self) -> dict[str, Any]:
        """A flat JSON-able dict (the columns of a problems file)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Problem:
        """Inverse of ``to_record``; extra keys are ignored."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})


def _digit_range(digits: int) -> tuple[int, int]:
    """reasoning-gym's value range for a digit count (1 digit includes 0)."""
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


@cache
def _dataset(spec: Spec) -> Any:
    """A reasoning-gym dataset for ``spec`` with base seed 0, so that item ``seed`` draws from ``Random(seed)``."""
    if spec.task == "chain_sum":
        from reasoning_gym.arithmetic.chain_sum import ChainSumConfig, ChainSumDataset

        lo_t, hi_t = spec.terms
        lo_d, hi_d = spec.digits
        config = ChainSumConfig(min_terms=lo_t, max_terms=hi_t, min_digits=lo_d, max_digits=hi_d, seed=0, size=1)
        return ChainSumDataset(config)
    if spec.task == "products":
        from reasoning_gym.arithmetic.products import ProductsConfig, ProductsDataset

        first, second = spec.digits

        class _Products(ProductsDataset):
            """reasoning-gym's products with a separate digit count for the second factor."""

            def _generate_task(self, rng: Any, num_terms: int, min_value: int, max_value: int) -> tuple[str, int]:
                if second == first:  # exactly reasoning-gym's draw
                    return super()._generate_task(rng, num_terms, min_value, max_value)
                a = rng.randint(min_value, max_value)
                b = rng.randint(*_digit_range(second))
                return f"{a} * {b}", a * b

        config = ProductsConfig(min_terms=2, max_terms=2, min_digits=first, max_digits=first, seed=0, size=1)
        return _Products(config)
    raise ValueError(f"unknown task {spec.task!r}; valid tasks are {list(TASKS)}")


def make_problem(spec: Spec, level: int, seed: int, split: str = "train") -> Problem:
    """The problem reasoning-gym generates for ``spec`` from ``seed``."""
    item = _dataset(spec)[seed]
    return Problem(
        split=split,
        seed=seed,
        level=level,
        task=spec.task,
        question=item["question"],
        answer=item["answer"],
        expression=item["metadata"]["expression"],
    )


def check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    """The tasks as a tuple; ValueError naming the valid ones when one is unknown or none is given."""
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown task(s) {bad or tasks}; valid tasks are {list(TASKS)}")
    return tasks


def generate_problems(
    split: str = "train",
    count: int = 100,
    levels: Sequence[int] = tuple(LEVELS),
    tasks: Sequence[str] = TASKS,
    offset: int = 0,
) -> list[Problem]:
    """``count`` problems of ``split``: seeds ``start+offset ...``, levels round-robin, tasks alternating per level.

    Repeating a level in ``levels`` weights it. The same arguments always give the same problems.
    """
    seeds = split_range(split)
    levels = check_levels(levels)
    tasks = check_tasks(tasks)
    if count < 0 or offset < 0 or offset + count > len(seeds):
        raise ValueError(f"split {split!r} holds {len(seeds)} seeds; offset {offset} + count {count} do not fit")
    problems = []
    for i in range(count):
        level = levels[i % len(levels)]
        specs = [s for s in LEVELS[level] if s.task in tasks]
        if not specs:
            raise ValueError(f"level {level} has no problems of tasks {list(tasks)}")
        spec = specs[(i // len(levels)) % len(specs)]
        problems.append(make_problem(spec, level, seeds.start + offset + i, split))
    return problems


def grade(problem: Problem, answer: str | None) -> float:
    """reasoning-gym's own ``score_answer`` for the final answer text (1.0 = correct; partial credit below)."""
    spec = next((s for specs in LEVELS.values() for s in specs if s.task == problem.task), None)
    if spec is None:
        raise ValueError(f"unknown task {problem.task!r}; valid tasks are {list(TASKS)}")
    return float(_dataset(spec).score_answer(answer, problem.entry()))


def is_correct(problem: Problem, answer: str | None) -> bool:
    """Whether reasoning-gym scores the answer as fully correct."""
    return grade(problem, answer) >= 1.0
