"""The effort policy: effort levels to strategy, verifier, samples and tokens, in a file an operator can replace."""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LEVELS = ("none", "minimal", "low", "medium", "high", "auto")  # every reasoning_effort value; thinking_level's too
DEFAULT = "default"  # a level's strategy: the server's default strategy
BUNDLED = Path(__file__).with_name("effort_policy.json")

Level = Literal["none", "minimal", "low", "medium", "high", "auto"]


class EffortPolicyError(ValueError):
    """An effort policy file that cannot be used; the message names the file and what is wrong."""


class EffortLevel(BaseModel):
    """What one effort level runs."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = DEFAULT
    strategy_options: dict[str, Any] | None = None
    verifier: str | None = None  # None: the request's, else the server's default verifier
    max_samples: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)  # every generated token of the request
    max_tokens_per_sample: int | None = Field(default=None, ge=1)  # overrides the policy's, at this level
    # Budget forcing: each sample thinks at most this many tokens, then its thinking is closed and it answers.
    thinking_budget: int | None = Field(default=None, ge=1)
    # s1's extension: an early end of thinking is replaced by the policy's continuation_cue this many times.
    thinking_extensions: int = Field(default=0, ge=0, le=16)


class EffortPolicy(BaseModel):
    """The whole table; every level must be given, so a request never meets a level the operator forgot."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    max_tokens_per_sample: int = Field(default=4096, ge=1)  # a request with no max_tokens gets this cap per sample
    continuation_cue: str = Field(default="Wait", min_length=1)  # what thinking_extensions insert
    levels: dict[Level, EffortLevel]

    @model_validator(mode="after")
    def _every_level(self) -> EffortPolicy:
        missing = [name for name in LEVELS if name not in self.levels]
        if missing:
            raise ValueError(f"levels: missing {', '.join(missing)} (every one of {', '.join(LEVELS)} is needed)")
        return self

    def check(self, strategies: Collection[str], verifiers: Collection[str] | None = None) -> None:
        """Refuse a level naming an unknown strategy or verifier, or options its strategy does not take."""
        from ponder.strategies import registry

        for name, level in self.levels.items():
            if level.strategy != DEFAULT and level.strategy not in strategies:
                raise EffortPolicyError(
                    f"levels.{name}.strategy: unknown strategy {level.strategy!r}; valid: {DEFAULT}, "
                    + ", ".join(sorted(strategies))
                )
            if level.strategy_options is not None:
                if level.strategy == DEFAULT:
                    raise EffortPolicyError(f"levels.{name}.strategy_options: name the strategy they are for")
                try:
                    registry.get(level.strategy).from_request(level.strategy_options)
                except ValidationError as exc:
                    raise EffortPolicyError(f"levels.{name}.strategy_options: {_problems(exc)}") from None
            if level.verifier is not None and verifiers is not None and level.verifier not in verifiers:
                raise EffortPolicyError(
                    f"levels.{name}.verifier: {level.verifier!r} is neither a --verifier name nor a built-in"
                )


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


def load_policy(path: str | Path | None = None) -> EffortPolicy:
    """The policy in ``path`` (JSON, or YAML by its suffix), or the bundled one; errors name the file."""
    return _load(str(path or BUNDLED))


@lru_cache(maxsize=8)
def _load(path: str) -> EffortPolicy:
    where = Path(path)
    try:
        text = where.read_text()
    except OSError as exc:
        raise EffortPolicyError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        if where.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError: both say where
        kind = "YAML" if where.suffix in (".yaml", ".yml") else "JSON"
        raise EffortPolicyError(f"{path}: not valid {kind}: {exc}") from None
    try:
        return EffortPolicy.model_validate(data)
    except ValidationError as exc:
        raise EffortPolicyError(f"{path}: {_problems(exc)}") from None
