"""Step aggregation, the completion-to-steps splitter, and ensembles' weighted sums."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from ponder.core.aggregate import aggregate
from ponder.verifiers.base import StepVerifier, Verifier, describe, split_completion, split_steps
from ponder.verifiers.ensemble import Ensemble, StepEnsemble, make_ensemble, minmax
from ponder.verifiers.math_rule import MathRule


def test_aggregations() -> None:
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "prod") == pytest.approx(0.36)
    assert aggregate(scores, "last") == 0.8
    assert aggregate(scores, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown step aggregation 'max'; valid: min, prod, last, mean"):
        aggregate(scores, "max")


def test_split_completion_and_steps() -> None:
    assert split_completion("<think>a\nb\n</think>5") == ("a\nb\n", "5", True)
    assert split_completion("a\n</think>5") == ("a\n", "5", True)  # the prompt opened the block
    assert split_completion("<think>a\nb") == ("a\nb", "", False)
    assert split_completion("just 5") == ("", "just 5", True)
    assert split_steps("<think> 2+3=5\n\n5-1=4 \n</think>4") == ["2+3=5", "5-1=4"]
    assert split_steps("<think>\n</think>4") == ["4"]
    assert split_steps("Step 1.\n\nStep 2.", separator="\n\n") == ["Step 1.", "Step 2."]
    assert split_steps("[a]x[b]y[/a]z", think_tags=("[a]", "[/a]")) == ["x[b]y"]
    assert split_steps("") == []


class Fixed:
    """A verifier with fixed scores per answer text (and per step), for checking the ensemble arithmetic."""

    def __init__(self, name: str, table: dict[str, float]) -> None:
        self.name = name
        self.table = table

    async def score(self, problem, answers: Sequence[str], reference=None) -> list[float]:
        return [self.table[a] for a in answers]


class FixedSteps(Fixed):
    step_level = True

    async def score_steps(self, problem, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [[self.table[s] for s in steps] for steps in solutions]


def test_minmax() -> None:
    assert minmax([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]
    assert minmax([2.0, 2.0]) == [0.5, 0.5]
    assert minmax([]) == []


async def test_ensemble_weighted_sum_raw_and_normalised() -> None:
    a = Fixed("a", {"x": 1.0, "y": 3.0, "z": 2.0})
    b = Fixed("b", {"x": 10.0, "y": 0.0, "z": 20.0})
    raw = make_ensemble([(a, 0.7), (b, 0.3)], normalize=False)
    assert type(raw) is Ensemble and not isinstance(raw, StepVerifier)
    assert await raw.score("q", ["x", "y", "z"]) == pytest.approx([3.7, 2.1, 7.4])
    norm = make_ensemble([(a, 0.7), (b, 0.3)], name="mix")
    assert await norm.score("q", ["x", "y", "z"]) == pytest.approx([0.15, 0.7, 0.65])
    assert (norm.name, norm.spec, describe(norm).kind, describe(norm).is_step) == (
        "mix",
        "a*0.7+b*0.3",
        "ensemble",
        False,
    )
    assert await norm.score("q", []) == []


async def test_step_ensemble_when_every_member_scores_steps() -> None:
    a = FixedSteps("a", {"s1": 0.2, "s2": 0.4, "s3": 1.0})
    b = FixedSteps("b", {"s1": 1.0, "s2": 0.0, "s3": 0.5})
    mix = make_ensemble([(a, 1.0), (b, 2.0)], normalize=False)
    assert isinstance(mix, StepEnsemble) and isinstance(mix, StepVerifier)
    steps = await mix.score_steps("q", [["s1", "s2"], [], ["s3"]])
    assert [len(s) for s in steps] == [2, 0, 1]
    assert [v for s in steps for v in s] == pytest.approx([2.2, 0.4, 2.0])
    assert not isinstance(make_ensemble([(a, 1.0), (MathRule(), 1.0)]), StepVerifier)


def test_ensemble_rejects_bad_members() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        make_ensemble([])
    with pytest.raises(ValueError, match="weight of 'a' must be a finite number"):
        make_ensemble([(Fixed("a", {}), math.inf)])


def test_protocols_and_describe() -> None:
    rule = MathRule()
    assert isinstance(rule, Verifier) and not isinstance(rule, StepVerifier)
    info = describe(rule)
    assert info.as_dict() == {"name": "math_rule", "kind": "math_rule", "is_step": False, "source": None}
    assert describe(FixedSteps("f", {})).as_dict() == {
        "name": "f",
        "kind": "FixedSteps",
        "is_step": True,
        "source": None,
    }
