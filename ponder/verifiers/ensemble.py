"""A weighted sum of other verifiers' scores, optionally min-max normalised per member across the batch."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from ponder.verifiers.base import Problem, Verifier, is_step_verifier


def minmax(values: Sequence[float]) -> list[float]:
    """``values`` rescaled to [0, 1]; a constant batch (no ranking information) maps to 0.5."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low <= 0.0:
        return [0.5] * len(values)
    return [(v - low) / (high - low) for v in values]


class Ensemble:
    """``score = sum(weight_i * member_i)``, each member first rescaled with :func:`minmax` when ``normalize``.

    Normalising puts members on one scale (an ORM logit and a PRM probability are not comparable); it needs a
    batch, so a single answer gets the same score from every normalised member. Use :func:`make_ensemble`, which
    returns a :class:`StepEnsemble` when every member is a step verifier.
    """

    step_level = False

    kind = "ensemble"
    source = None

    def __init__(
        self, members: Sequence[tuple[Verifier, float]], *, name: str = "ensemble", normalize: bool = True
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for verifier, weight in members:
            if not isinstance(weight, int | float) or not math.isfinite(weight):
                raise ValueError(f"ensemble weight of {verifier.name!r} must be a finite number, got {weight!r}")
        self.members = [(verifier, float(weight)) for verifier, weight in members]
        self.name = name
        self.normalize = normalize

    def _combine(self, columns: Sequence[Sequence[float]]) -> list[float]:
        if self.normalize:
            columns = [minmax(col) for col in columns]
        return [
            math.fsum(w * col[i] for (_, w), col in zip(self.members, columns, strict=True))
            for i in range(len(columns[0]))
        ]

    async def score(self, problem: Problem, answers: Sequence[str], reference: str | None = None) -> list[float]:
        if not answers:
            return []
        columns = await asyncio.gather(*(v.score(problem, answers, reference) for v, _ in self.members))
        return self._combine(columns)

    @property
    def spec(self) -> str:
        """The members as ``name*weight+...``."""
        return "+".join(f"{v.name}*{w:g}" for v, w in self.members)


class StepEnsemble(Ensemble):
    """An ensemble of step verifiers: also combines step scores (normalised over all steps of the batch)."""

    step_level = True

    async def score_steps(self, problem: Problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        per_member = await asyncio.gather(*(v.score_steps(problem, solutions) for v, _ in self.members))  # type: ignore[attr-defined]
        flat = self._combine([[s for steps in member for s in steps] for member in per_member])
        out, i = [], 0
        for steps in solutions:
            out.append(flat[i : i + len(steps)])
            i += len(steps)
        return out


def make_ensemble(
    members: Sequence[tuple[Verifier, float]], *, name: str = "ensemble", normalize: bool = True
) -> Ensemble:
    """An :class:`Ensemble`, or a :class:`StepEnsemble` when every member scores steps."""
    cls = StepEnsemble if members and all(is_step_verifier(v) for v, _ in members) else Ensemble
    return cls(members, name=name, normalize=normalize)
