"""The one adapter from Ponder's verifiers to training rewards: reasoning-gym's scorer, the rules, ORM, PRM, sums.

``--reward scorer=1.0 --reward calculator=0.5`` is a weighted sum of terms. Each term is a TRL reward function (an
async callable, one float per completion, named after the term so TRL logs ``rewards/<name>/mean``); GRPO hands the
weights to TRL (``reward_weights``), the other trainers sum them with :func:`weighted_sum`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.tasks import Problem, grade, parse_output
from ponder.training.common import TrainingInputError

# name: what it scores
TERMS = {
    "scorer": "reasoning-gym's own score of the final answer against the problem's (needs the problem's columns; "
    "math-verify against an `answer` column otherwise)",
    "calculator": "every equation of the steps recomputed, and the answer agreeing with the last value",
    "math_rule": "math-verify against the `answer` column (well-formedness and agreement without one)",
    "orm": "the bundled outcome reward model (a raw logit)",
    "prm": "the bundled process reward model (the minimum of its step scores)",
}
PROBLEM_COLUMNS = tuple(Problem.__dataclass_fields__)


@dataclass(frozen=True)
class RewardTerm:
    """One ``--reward`` term: a name from :data:`TERMS` or a verifier model folder, and its weight."""

    name: str
    weight: float = 1.0


def parse_rewards(specs: Sequence[str]) -> list[RewardTerm]:
    """``KEY[=WEIGHT]`` specs as terms; a :class:`TrainingInputError` naming the bad one otherwise."""
    if not specs:
        raise TrainingInputError("--reward: give at least one term, e.g. --reward scorer=1.0")
    terms = []
    for spec in specs:
        key, _, weight_text = spec.rpartition("=") if "=" in spec else (spec, "", "1")
        try:
            weight = float(weight_text)
        except ValueError:
            weight = math.nan
        if not key or not math.isfinite(weight):
            raise TrainingInputError(f"--reward {spec!r}: expected KEY=WEIGHT with a finite number, e.g. scorer=1.0")
        if key not in TERMS and not (Path(key) / "config.json").is_file():
            valid = ", ".join(TERMS)
            raise TrainingInputError(f"--reward {spec!r}: unknown term {key!r}; use {valid}, or a verifier folder")
        terms.append(RewardTerm(key, weight))
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise TrainingInputError("--reward: a term is listed twice")
    return terms


def text_of(completion: Any) -> str:
    """The completion's text: a string, or TRL's conversational form ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    return "".join(turn.get("content") or "" for turn in completion)


def problem_of(columns: dict[str, Any]) -> Problem | None:
    """The arithmetic problem a row describes, when it has every column of one (generated prompts do)."""
    if all(columns.get(c) is not None for c in PROBLEM_COLUMNS):
        return Problem.from_record(columns)
    return None


def _groups(prompts: Sequence[Any], rows: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Indices of the completions of each distinct prompt (and reference answer), in order: a verifier scores one
    prompt's batch at once."""
    by_prompt: dict[str, list[int]] = {}
    for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
        by_prompt.setdefault(json.dumps([prompt, row.get("answer")], sort_keys=True, default=str), []).append(i)
    return list(by_prompt.values())


def check_scorable(terms: Sequence[RewardTerm], rows: Sequence[dict[str, Any]], source: str) -> None:
    """Refuse, before training, prompts the scorer cannot grade: neither a generated problem nor an `answer`."""
    if any(t.name == "scorer" for t in terms):
        missing = next((i for i, r in enumerate(rows) if problem_of(r) is None and r.get("answer") is None), None)
        if missing is not None:
            raise TrainingInputError(
                f"{source}: row {missing} has no `answer` column, which the scorer reward grades against"
            )


class Reward:
    """One reward term as a TRL reward function: ``await reward(prompts=..., completions=..., **columns)``."""

    def __init__(self, term: RewardTerm, verifier: Any = None) -> None:
        self.term = term
        self.verifier = verifier
        self.__name__ = Path(term.name).name if term.name not in TERMS else term.name

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        rows = [{k: v[i] for k, v in columns.items() if isinstance(v, list)} for i in range(len(completions))]
        texts = [text_of(c) for c in completions]
        scores: list[float] = [0.0] * len(texts)
        for group in _groups(prompts, rows):
            values = await self._score(prompts[group[0]], [texts[i] for i in group], rows[group[0]])
            for i, value in zip(group, values, strict=True):
                scores[i] = float(value)
        return scores

    async def _score(self, prompt: Any, texts: list[str], row: dict[str, Any]) -> list[float]:
        reference = row.get("answer")
        if self.term.name == "scorer":
            problem = problem_of(row)
            if problem is not None:
                return [grade(problem, parse_output(t).answer) for t in texts]
            if reference is None:
                raise TrainingInputError("the scorer reward needs an `answer` column (or generated problems)")
        problem_view = prompt if isinstance(prompt, list) else str(prompt)
        return await self.verifier.score(problem_view, texts, None if reference is None else str(reference))

    async def aclose(self) -> None:
        close = getattr(self.verifier, "aclose", None)
        if close is not None:
            await close()


def _verifier(term: RewardTerm) -> Any:
    """The Ponder verifier a term scores with (the scorer's math-verify fallback for rows without a problem)."""
    from ponder.training.policy_config import bundled
    from ponder.verifiers.registry import VerifierSpec, detect_kind, load_verifier

    if term.name in ("scorer", "math_rule"):
        return load_verifier(VerifierSpec(term.name, "math_rule", "math_rule"))
    if term.name == "calculator":
        return load_verifier(VerifierSpec("calculator", "calculator", "calculator"))
    path = bundled(term.name) if term.name in ("orm", "prm") else term.name
    try:
        return load_verifier(VerifierSpec(Path(path).name, path, detect_kind(path)))
    except ValueError as exc:  # VerifierLoadError: not a verifier folder
        raise TrainingInputError(f"--reward {term.name}: {exc}") from None


def build_rewards(terms: Sequence[RewardTerm]) -> list[Reward]:
    """One :class:`Reward` per term, its verifier loaded (model verifiers start their worker thread)."""
    return [Reward(term, _verifier(term)) for term in terms]


async def weighted_sum(
    rewards: Sequence[Reward], prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
) -> list[float]:
    """``sum_k weight_k * reward_k`` per completion, the terms scored concurrently."""
    per_term = await asyncio.gather(*(r(prompts=prompts, completions=completions, **columns) for r in rewards))
    return [sum(r.term.weight * s[i] for r, s in zip(rewards, per_term, strict=True)) for i in range(len(completions))]


async def close_rewards(rewards: Sequence[Reward]) -> None:
    """Stop the verifiers' worker threads."""
    for reward in rewards:
        await reward.aclose()
