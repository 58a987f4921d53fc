"""Shared fixtures: fake verifiers for strategy tests and a tiny Llama built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ponder.testing import RulePRM, TableVerifier


@pytest.fixture
def prm() -> RulePRM:
    """A step verifier scoring each step by its word (best 1, good .75, ok .5, bad .25, wrong 0, else .3).

    Step searches must ask it for step scores only: a whole-answer call fails the test.
    """
    return RulePRM(steps_only=True)


@pytest.fixture
def graded_prm() -> RulePRM:
    """A step verifier on a coarser scale: a step with "good" scores 0.9, "ok" 0.5, "bad" 0.1 (else 0.3); steps only."""
    return RulePRM({"good": 0.9, "ok": 0.5, "bad": 0.1}, steps_only=True)


@pytest.fixture
def orm() -> TableVerifier:
    """A whole-answer verifier that scores every answer 0.5 (a verifier that is not a PRM)."""
    return TableVerifier({}, default=0.5, name="orm")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama (head dim 64) with a char-level tokenizer and chat template."""
    from ponder.training.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
