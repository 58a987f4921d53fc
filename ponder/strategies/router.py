"""The learned router's policy file: online features of a prompt and its probe, difficulty levels, and an arm per level.

``ponder train router`` writes it from ``ponder eval`` logs; ``ponder serve --router FILE`` loads it and
``compute_optimal`` follows it. Every feature is computable when a request is served: the question's text and the
probe's answers, verifier scores and lengths, so the router never reads anything a live request would not have.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

VERSION = 1
LEVELS = (1, 2, 3, 4, 5)


def check_route_levels(routes: Mapping[int, Any]) -> None:
    """ValueError unless ``routes`` gives exactly the difficulty levels 1-5, naming the missing and unknown ones."""
    missing = [str(level) for level in LEVELS if level not in routes]
    extra = [str(level) for level in routes if level not in LEVELS]
    if missing or extra:
        raise ValueError(
            "routes must give exactly the levels 1-5"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(extra)}" if extra else "")
        )


PROBE_ARM = "probe"  # the arm that stops at the probe's majority answer

# name: what it measures (the policy file's features name these; the trainer documents them from here)
FEATURES: dict[str, str] = {
    "agreement": "share of the probe's samples giving its majority answer (0 when none is extractable)",
    "distinct": "distinct answers in the probe, over its samples",
    "unanswered": "share of the probe's samples with no extractable answer",
    "score_mean": "mean verifier score of the probe's samples, on [0, 1]",
    "score_min": "lowest verifier score in the probe",
    "score_max": "highest verifier score in the probe",
    "score_top": "mean verifier score of the samples giving the majority answer",
    "tokens_mean": "mean generated tokens per probe sample",
    "q_numbers": "numbers in the question",
    "q_max_digits": "digits of the question's longest number",
    "q_digits": "digits in the question, all numbers together",
    "q_mul": "multiplication signs in the question",
}

_NUMBER = re.compile(r"\d+")
_MUL = re.compile(r"[*×]|\btimes\b")


class RouterFileError(ValueError):
    """A router file that cannot be used; the message names the file and what is wrong."""


def question_features(question: str) -> dict[str, float]:
    """Cheap features of the question text: how many numbers, how long, whether it multiplies."""
    numbers = _NUMBER.findall(question)
    return {
        "q_numbers": float(len(numbers)),
        "q_max_digits": float(max((len(n) for n in numbers), default=0)),
        "q_digits": float(sum(len(n) for n in numbers)),
        "q_mul": float(len(_MUL.findall(question))),
    }


def probe_features(
    answers: Sequence[str | None], scores: Sequence[float] | None, tokens: Sequence[int]
) -> dict[str, float]:
    """Features of the probe's samples: agreement, verifier scores on [0, 1] (``None``: no verifier) and length."""
    k = len(answers)
    votes = Counter(a for a in answers if a is not None)
    top, top_votes = votes.most_common(1)[0] if votes else (None, 0)
    scored = list(scores) if scores is not None and k else [0.0] * k
    top_scores = [s for a, s in zip(answers, scored, strict=True) if top is not None and a == top]
    return {
        "agreement": top_votes / k if k else 0.0,
        "distinct": len(votes) / k if k else 0.0,
        "unanswered": sum(a is None for a in answers) / k if k else 1.0,
        "score_mean": sum(scored) / k if k else 0.0,
        "score_min": min(scored, default=0.0),
        "score_max": max(scored, default=0.0),
        "score_top": sum(top_scores) / len(top_scores) if top_scores else 0.0,
        "tokens_mean": sum(tokens) / k if k else 0.0,
    }


def prompt_question(messages: Sequence[Mapping[str, Any]] | None, text: str | None) -> str:
    """The question a router reads: the last user turn's text (a raw prompt: all of it)."""
    for message in reversed(messages or ()):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts: the text ones
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return text or ""


class Predictor(BaseModel):
    """Logistic regression on standardised features: P(solved) = sigmoid(bias + sum w_i (x_i - mean_i) / scale_i)."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(min_length=1)
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float

    @model_validator(mode="after")
    def _shapes(self) -> Predictor:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {', '.join(unknown)}; known: {', '.join(FEATURES)}")
        if not len(self.mean) == len(self.scale) == len(self.weights) == len(self.features):
            raise ValueError("features, mean, scale and weights must have the same length")
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("scale must be positive and finite")
        if not all(math.isfinite(v) for v in (*self.mean, *self.weights, self.bias)):
            raise ValueError("mean, weights and bias must be finite")
        return self

    def predict(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(
            w * (features[f] - m) / s
            for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))


class Arm(BaseModel):
    """One thing the router can route to: a strategy with its options and a number of samples beyond the probe."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    strategy: str = Field(min_length=1, description=f"A registered strategy, or '{PROBE_ARM}': stop at the probe.")
    strategy_options: dict[str, Any] = Field(default_factory=dict)
    samples: int = Field(0, ge=0, le=4096, description="budget.max_samples of the arm as measured (0 for the probe).")
    includes_probe: bool = Field(
        False,
        description="The probe's samples count among the arm's (best-of-n: they are the first of its n), so the "
        "routed strategy draws samples - probe_samples more.",
    )

    @model_validator(mode="after")
    def _probe_spends_nothing(self) -> Arm:
        if (self.strategy == PROBE_ARM) != (self.samples == 0):
            raise ValueError(f"arm {self.name!r}: samples must be 0 exactly for the '{PROBE_ARM}' strategy")
        if self.strategy == PROBE_ARM and self.strategy_options:
            raise ValueError(f"arm {self.name!r}: the '{PROBE_ARM}' arm takes no strategy_options")
        return self


class RouterPolicy(BaseModel):
    """A trained router: the probe it needs, the difficulty predictor and its level cuts, and each level's arm."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    description: str | None = None
    verifier: str | None = Field(
        description="The verifier whose scores the features read and the arms ran with; a request with another "
        "verifier is routed by the fixed thresholds instead."
    )
    probe_samples: int = Field(ge=1, le=64)
    answer_extraction: Literal["content", "last_number", "boxed"] = "content"
    aggregation: Literal["min", "prod", "last", "mean"] = "min"
    probe_answer: Literal["majority", "best_score"] = Field(
        "majority", description="What the probe arm returns: the probe's most-voted answer, or its best-scored."
    )
    difficulty: Predictor
    cuts: list[float] = Field(
        description="Four strictly decreasing predicted solve rates: >= cuts[0] is level 1 ... below cuts[3] level 5."
    )
    arms: list[Arm] = Field(min_length=1)
    routes: dict[int, str] = Field(description="Level 1-5 -> the name of its arm.")
    lambda_tokens: float = Field(ge=0.0, description="Accuracy given up per generated token when the arms were chosen.")
    training: dict[str, Any] = Field(default_factory=dict, description="How it was trained and what it measured.")

    @model_validator(mode="after")
    def _consistent(self) -> RouterPolicy:
        if len(self.cuts) != 4 or any(a <= b for a, b in zip(self.cuts, self.cuts[1:], strict=False)):
            raise ValueError("cuts must be four strictly decreasing values")
        if any(not 0.0 <= c <= 1.0 for c in self.cuts):
            raise ValueError("cuts must lie in [0, 1]")
        names = [a.name for a in self.arms]
        short = [a.name for a in self.arms if a.includes_probe and a.samples <= self.probe_samples]
        if short:
            raise ValueError(f"arms {', '.join(short)} include the probe but have no more samples than it")
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {', '.join(names)}")
        check_route_levels(self.routes)
        for level, arm in self.routes.items():
            if arm not in names:
                raise ValueError(f"routes.{level}: no arm named {arm!r}; arms: {', '.join(names)}")
        return self

    def level(self, features: Mapping[str, float]) -> tuple[float, int]:
        """The predicted solve rate and the difficulty level it falls in (1 easy .. 5 hard)."""
        p = self.difficulty.predict(features)
        return p, 1 + sum(p < c for c in self.cuts)

    def arm(self, level: int) -> Arm:
        name = self.routes[level]
        return next(a for a in self.arms if a.name == name)

    def samples_after_probe(self, arm: Arm) -> int:
        """The samples the arm's strategy draws once the probe has run."""
        return arm.samples - self.probe_samples if arm.includes_probe else arm.samples


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


def parse_router(data: Any, where: str = "router") -> RouterPolicy:
    """A policy from parsed JSON; :class:`RouterFileError` naming ``where`` and the field otherwise."""
    if isinstance(data, dict) and data.get("version") not in (None, VERSION):
        raise RouterFileError(
            f"{where}: version {data.get('version')!r} is not supported (this Ponder reads {VERSION})"
        )
    try:
        return RouterPolicy.model_validate(data)
    except ValidationError as exc:
        raise RouterFileError(f"{where}: {_problems(exc)}") from None


def load_router(path: str | Path) -> RouterPolicy:
    """The policy in ``path`` (JSON); :class:`RouterFileError` naming the file otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RouterFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RouterFileError(f"{path}: not valid JSON: {exc}") from None
    return parse_router(data, str(path))
