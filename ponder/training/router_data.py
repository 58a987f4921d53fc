"""The router's training data: ``ponder eval`` logs read, checked and joined into per-problem features and outcomes."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ponder.strategies.router import PROBE_ARM, Arm
from ponder.training.common import TrainingInputError

log = logging.getLogger("ponder.train")

# Arms whose result is a selection over independent samples: the probe's samples can be the first of them.
POOLED = ("best_of_n",)
# The option of an adaptive arm (best_of_n, dvts): it draws nothing once a candidate, the probe's included, scores
# this high, so routed after a probe that already did, it costs nothing more and answers the probe's best.
STOP_OPTION = "stop_score"


@dataclass
class RouterData:
    """Problems x features, and problems x arms outcomes; arm 0 is the probe alone (stop at its majority)."""

    features: np.ndarray  # (problems, features)
    correct: np.ndarray  # (problems, arms), 0/1
    tokens: np.ndarray  # (problems, arms): generated tokens, the probe's included
    arms: list[Arm]
    feature_names: list[str]
    levels: np.ndarray  # the problems' own difficulty levels (reports only; never a feature)
    verifier: str | None
    probe_samples: int
    probe_options: dict[str, Any]
    splits: list[str]


def read_rows(paths: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the logs, by run name; a row without its ``request`` gets it from its folder's summary.json."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in map(Path, paths):
        if not path.exists():
            raise TrainingInputError(f"{path}: no such file or folder")
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not files:
            raise TrainingInputError(f"{path}: no *.jsonl eval logs in this folder")
        for file in files:
            requests = _summary_requests(file.parent)
            for number, line in enumerate(file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingInputError(f"{file}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict) or "run" not in row or "seed" not in row:
                    raise TrainingInputError(f"{file}:{number}: not a ponder eval row (no run or seed)")
                if not row.get("request"):
                    row["request"] = requests.get(row["run"])
                if not row["request"]:
                    raise TrainingInputError(
                        f"{file}:{number}: run {row['run']!r} has no request (old log, no summary)"
                    )
                runs[row["run"]].append(row)
    return dict(runs)


def _summary_requests(folder: Path) -> dict[str, dict[str, Any]]:
    summary = folder / "summary.json"
    if not summary.is_file():
        return {}
    try:
        return {r["name"]: r.get("request") or {} for r in json.loads(summary.read_text()).get("runs", [])}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return {}


def find_probe(runs: dict[str, list[dict[str, Any]]], name: str | None) -> str:
    """The probe run: ``name``, else the one run whose rows carry probe features; it must stop at the probe."""
    probes = [r for r, rows in runs.items() if all(row.get("probe") for row in rows if row.get("error") is None)]
    probes = [r for r in probes if runs[r][0]["request"].get("strategy") == "compute_optimal"]
    if name is None:
        if len(probes) != 1:
            found = ", ".join(probes) or "none"
            raise TrainingInputError(
                f"need exactly one probe run (compute_optimal rows with probe features), found: {found}; "
                "name it with --probe-run"
            )
        name = probes[0]
    if name not in runs:
        raise TrainingInputError(f"--probe-run {name!r}: no such run; runs: {', '.join(sorted(runs))}")
    rows = [row for row in runs[name] if row.get("error") is None]
    if not all(row.get("probe") for row in rows):
        raise TrainingInputError(f"probe run {name!r}: rows without probe features (an older ponder eval?)")
    if any(row.get("routed_to") != PROBE_ARM for row in rows):
        raise TrainingInputError(f"probe run {name!r}: every route must be 'probe' (the run measures the probe alone)")
    return name


def arm_of(name: str, request: dict[str, Any]) -> Arm:
    """The arm a run measured: its strategy, options and ``budget.max_samples``."""
    strategy = request.get("strategy")
    samples = (request.get("budget") or {}).get("max_samples")
    if not strategy or strategy == "compute_optimal" or request.get("reasoning_effort"):
        raise TrainingInputError(f"run {name!r}: an arm needs an explicit strategy other than compute_optimal")
    if not isinstance(samples, int) or samples < 1:
        raise TrainingInputError(f"run {name!r}: an arm needs budget.max_samples (its budget)")
    return Arm(name=name, strategy=strategy, strategy_options=request.get("strategy_options") or {}, samples=samples)


def build_data(
    runs: dict[str, list[dict[str, Any]]],
    probe_run: str,
    arm_runs: Sequence[str],
    feature_names: Sequence[str],
    allow_test: bool = False,
) -> RouterData:
    """Join the probe's rows with each arm's on (split, seed): the problems every run answered without an error."""
    probe_rows = runs[probe_run]
    request = probe_rows[0]["request"]
    verifier = request.get("verifier")
    arms = [Arm(name=PROBE_ARM, strategy=PROBE_ARM)]
    for name in arm_runs:
        arm_request = runs[name][0]["request"]
        if arm_request.get("verifier") != verifier:
            raise TrainingInputError(
                f"run {name!r}: verifier {arm_request.get('verifier')!r}, but the probe's is {verifier!r} "
                "(the router routes among arms of the probe's verifier)"
            )
        arms.append(arm_of(name, arm_request))
    splits = sorted({row["split"] for name in (probe_run, *arm_runs) for row in runs[name]})
    if "test" in splits and not allow_test:
        raise TrainingInputError(
            "the logs include the `test` split, which is for held-out measurement: train on `validation` "
            "(ponder eval --split validation), or pass --allow-test"
        )
    by_run = [_by_problem(runs[name]) for name in (probe_run, *arm_runs)]
    keys = sorted(set.intersection(*(set(rows) for rows in by_run)))
    dropped = len({k for rows in by_run for k in rows}) - len(keys)
    if dropped:
        log.info("router: %d problems left out (missing or failed in some run)", dropped)
    probe = [by_run[0][k] for k in keys]
    unknown = [f for f in feature_names if probe and f not in probe[0]["probe"]]
    if unknown:
        raise TrainingInputError(f"probe run {probe_run!r}: its rows lack the features {', '.join(unknown)}")
    probe_tokens = np.array([row["completion_tokens"] for row in probe], dtype=float)
    correct = np.array([[float(rows[k]["correct"]) for rows in by_run] for k in keys]).reshape(len(keys), len(arms))
    tokens = np.array([[float(rows[k]["completion_tokens"]) for rows in by_run] for k in keys]).reshape(correct.shape)
    k = int((request.get("strategy_options") or {}).get("probe_samples", 4))
    probe_best = np.array([float(row["probe"].get("score_max", -np.inf)) for row in probe])
    _after_probe(arms, correct, tokens, k, probe_best, probe_tokens)
    options = request.get("strategy_options") or {}
    return RouterData(
        features=np.array([[float(row["probe"][f]) for f in feature_names] for row in probe]).reshape(len(keys), -1),
        correct=correct,
        tokens=tokens,
        arms=arms,
        feature_names=list(feature_names),
        levels=np.array([row["level"] for row in probe], dtype=int),
        verifier=verifier,
        probe_samples=k,
        probe_options=options,
        splits=splits,
    )


def _after_probe(
    arms: list[Arm], correct: np.ndarray, tokens: np.ndarray, k: int, probe_best: np.ndarray, probe_tokens: np.ndarray
) -> None:
    """Each arm's outcome and cost as routed after the probe, from its run alone."""
    for i, arm in enumerate(arms[1:], 1):
        # best-of-n's pool takes the probe's samples as its first ones; any other arm pays for its probe on top
        arm.includes_probe = arm.strategy in POOLED and arm.samples > k
        bar = arm.strategy_options.get(STOP_OPTION)
        if bar is not None:
            _gate(correct, tokens, i, probe_best >= float(bar), probe_tokens)
        elif not arm.includes_probe:
            tokens[:, i] += probe_tokens


def _gate(correct: np.ndarray, tokens: np.ndarray, arm: int, sure: np.ndarray, probe_tokens: np.ndarray) -> None:
    """An adaptive arm routed after the probe: where the probe was sure, the probe's outcome and cost; elsewhere the
    arm's, with the probe paid on top (for a pooled arm that overcounts a chunk: its own first chunk stands in for
    the probe that was not sure)."""
    correct[sure, arm] = correct[sure, 0]
    tokens[sure, arm] = probe_tokens[sure]
    tokens[~sure, arm] += probe_tokens[~sure]


def _by_problem(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """A run's answered rows by (split, seed)."""
    return {
        (row["split"], row["seed"]): row
        for row in rows
        if row.get("error") is None and row.get("completion_tokens") is not None
    }
