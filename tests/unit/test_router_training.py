"""``ponder train router`` on small synthetic eval logs: the arms it picks, its lambda search, what it refuses, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ponder.cli.main import main as ponder
from ponder.strategies.router import load_router
from ponder.training.common import TrainingInputError
from ponder.training.router import fit_logistic, predict, train_router
from ponder.training.router_config import RouterArgs

PROBE_REQUEST = {
    "strategy": "compute_optimal",
    "verifier": "prm",
    "budget": {"max_samples": 4},
    "strategy_options": {"probe_samples": 4, "probe_answer": "best_score"},
}


def row(run: str, seed: int, correct: bool, tokens: int, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "run": run,
        "split": extra.pop("split", "validation"),
        "seed": seed,
        "level": 1 + seed % 5,
        "correct": correct,
        "completion_tokens": tokens,
        "request": request,
        "error": None,
        **extra,
    }


def probe_of(easy: bool, rng: np.random.Generator) -> dict[str, float]:
    """Easy problems: the probe agrees and scores high; hard ones: it scatters and scores low (with noise)."""
    agreement = 1.0 if easy else float(rng.choice([0.25, 0.5]))
    score = float(np.clip((0.85 if easy else 0.15) + rng.normal(0, 0.05), 0, 1))
    return {
        "agreement": agreement,
        "distinct": 0.25 if easy else 1 - agreement / 2,
        "unanswered": 0.0,
        "score_mean": score,
        "score_min": score - 0.05,
        "score_max": score + 0.05,
        "score_top": score,
        "tokens_mean": 10.0,
        "q_numbers": 2.0 if easy else 5.0,
        "q_max_digits": 1.0 if easy else 3.0,
        "q_digits": 2.0 if easy else 15.0,
        "q_mul": 0.0,
    }


def write_logs(folder: Path, problems: int = 100, **probe_extra: Any) -> Path:
    """Half easy (the probe alone solves them), half hard (only 16-sample best-of-n does; dvts-4 never does)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    probe, bon, dvts = [], [], []
    bon_request = {"strategy": "best_of_n", "verifier": "prm", "budget": {"max_samples": 16}}
    dvts_request = {"strategy": "dvts", "verifier": "prm", "budget": {"max_samples": 4}}
    for seed in range(problems):
        easy = seed % 2 == 0
        extra = {"probe": probe_of(easy, rng), "routed_to": "probe", **probe_extra}
        probe.append(row("probe", seed, easy, 40, PROBE_REQUEST, **extra))
        bon.append(row("bon16", seed, True, 400, bon_request))
        dvts.append(row("dvts4", seed, easy, 100, dvts_request))
    for name, rows in (("probe", probe), ("bon16", bon), ("dvts4", dvts)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def train(tmp_path: Path, **flags: Any) -> dict[str, Any]:
    logs = flags.pop("logs", None) or write_logs(tmp_path / "logs")
    out = train_router(RouterArgs(logs=[str(logs)], output=str(tmp_path / "router.json"), overwrite=True, **flags))
    load_router(out)  # what it writes is what serve loads
    return json.loads(out.read_text())


def test_logistic_regression_learns_the_direction_of_a_feature():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.2 * rng.normal(size=400) > 0).astype(float)  # the first feature decides, the second is noise
    model = fit_logistic(x, y, l2=0.1, names=["agreement", "score_mean"])
    assert model.weights[0] > 3 and abs(model.weights[1]) < 0.5
    p = predict(model, np.array([[2.0, 0.0], [-2.0, 0.0]]))
    assert p[0] > 0.95 and p[1] < 0.05
    assert model.predict({"agreement": 2.0, "score_mean": 0.0}) == pytest.approx(p[0])


def test_easy_problems_stop_at_the_probe_and_hard_ones_get_the_big_arm(tmp_path):
    router = train(tmp_path, lambda_tokens=1e-4)
    levels = {t["level"]: t for t in router["training"]["levels"]}
    easy = next(lv for lv in levels.values() if lv["problems"] and lv["arms"]["probe"]["accuracy"] == 1.0)
    hard = next(lv for lv in levels.values() if lv["problems"] and lv["arms"]["probe"]["accuracy"] == 0.0)
    assert router["routes"][str(easy["level"])] == "probe" and router["routes"][str(hard["level"])] == "bon16"
    assert easy["level"] < hard["level"]  # level 1 is the easiest
    assert router["training"]["fit"]["accuracy"] == 1.0
    assert router["routes"]["1"] == "probe" and router["routes"]["5"] == "bon16"
    # about half stop at 40 tokens, half run best-of-16, which reuses the probe (400 in all, not 440); a level
    # straddling the two halves runs best-of-16 for all of its problems
    assert 220 <= router["training"]["fit"]["tokens"] < 300
    [bon] = [a for a in router["arms"] if a["name"] == "bon16"]
    assert bon["includes_probe"] and bon["samples"] == 16 and router["probe_answer"] == "best_score"
    assert hard["arms"]["dvts4"]["tokens"] == 140  # dvts cannot reuse the probe: it pays for it on top


def test_an_adaptive_arm_after_a_sure_probe_costs_the_probe_alone(tmp_path):
    logs = write_logs(tmp_path / "logs")
    request = {"strategy": "dvts", "verifier": "prm", "budget": {"max_samples": 16}, "strategy_options": {}}
    request["strategy_options"]["stop_score"] = 0.5  # the easy problems' probes score ~0.9, the hard ones' ~0.2
    rows = [row("advts16", seed, seed % 3 != 0, 300, request) for seed in range(100)]
    (logs / "advts16.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    router = train(tmp_path, logs=logs, lambda_tokens=1e-4)
    levels = [lv for lv in router["training"]["levels"] if lv["problems"]]
    easy = next(lv for lv in levels if lv["arms"]["probe"]["accuracy"] == 1.0)
    hard = next(lv for lv in levels if lv["arms"]["probe"]["accuracy"] == 0.0)
    # sure: the probe's answer (right, though the arm's own run missed a third) at the probe's 40 tokens
    assert easy["arms"]["advts16"] == {**easy["arms"]["advts16"], "accuracy": 1.0, "tokens": 40}
    # not sure: the arm's own outcome, the probe paid on top
    assert hard["arms"]["advts16"]["tokens"] == 340 and hard["arms"]["advts16"]["accuracy"] < 1.0


def test_a_high_price_on_tokens_keeps_every_level_at_the_probe(tmp_path):
    router = train(tmp_path, lambda_tokens=0.01)  # 1.0 accuracy is worth less than 360 tokens at this price
    assert set(router["routes"].values()) == {"probe"} and [a["name"] for a in router["arms"]] == ["probe"]


def test_the_lambda_search_matches_the_references_accuracy_with_the_fewest_tokens(tmp_path):
    router = train(tmp_path)  # the default objective
    cv = router["training"]["cross_validated"]
    assert router["training"]["objective"] == "match_accuracy" and cv["accuracy"] == 1.0 and cv["tokens"] < 300
    assert router["routes"]["1"] == "probe"  # it reaches 100% without spending on the easy half


@pytest.mark.parametrize(("ratio", "accuracy"), [(1.0, 1.0), (0.25, 0.5)])
def test_the_lambda_search_keeps_within_the_token_share_of_the_reference(tmp_path, ratio, accuracy):
    router = train(tmp_path, objective="within_tokens", token_ratio=ratio)
    assert router["training"]["reference"] == {"arm": "bon16", "accuracy": 1.0, "tokens": 400.0}
    cv = router["training"]["cross_validated"]
    assert cv["tokens"] <= ratio * 400 and cv["accuracy"] == pytest.approx(accuracy, abs=0.05)
    assert router["training"]["fit"]["accuracy"] == pytest.approx(accuracy, abs=0.05)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: write_logs(d, split="test"), "the `test` split"),
        (lambda d: write_logs(d, problems=20), "20 problems have a row in every run; --min-problems is 50"),
        (lambda d: write_logs(d, routed_to="best_of_n"), "every route must be 'probe'"),
        (lambda d: (write_logs(d), (d / "probe.jsonl").unlink()), "need exactly one probe run"),
        (lambda d: (write_logs(d), _rewrite(d / "dvts4.jsonl", verifier="orm")), "verifier 'orm', but the probe's"),
        (lambda d: (write_logs(d), _rewrite(d / "dvts4.jsonl", request=None)), "has no request"),
        (lambda d: (write_logs(d), (d / "x.jsonl").write_text("{bad\n")), "x.jsonl:1: not JSON"),
    ],
)
def test_bad_logs_are_refused_before_training(tmp_path, setup, message):
    logs = tmp_path / "logs"
    setup(logs)
    with pytest.raises(TrainingInputError, match=message):
        train(tmp_path, logs=logs)
    assert not (tmp_path / "router.json").exists()


def _rewrite(path: Path, **change: Any) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        if "verifier" in change:
            r["request"] = {**r["request"], "verifier": change["verifier"]}
        else:
            r.update(change)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_an_older_log_takes_its_requests_from_the_summary_beside_it(tmp_path):
    logs = write_logs(tmp_path / "logs")
    requests = {}
    for name in ("probe", "bon16", "dvts4"):
        rows = [json.loads(line) for line in (logs / f"{name}.jsonl").read_text().splitlines()]
        requests[name] = rows[0].pop("request")
        for r in rows[1:]:
            r.pop("request")
        (logs / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"runs": [{"name": n, "request": r} for n, r in requests.items()]}
    (logs / "summary.json").write_text(json.dumps(summary))
    assert train(tmp_path, logs=logs, lambda_tokens=1e-4)["training"]["fit"]["accuracy"] == 1.0


def test_the_cli_trains_a_router_and_refuses_an_existing_file(tmp_path, capsys):
    logs = write_logs(tmp_path / "logs")
    out = tmp_path / "router.json"
    argv = ["train", "router", "--logs", str(logs), "--output", str(out), "--lambda-tokens", "1e-4"]
    assert ponder(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert load_router(out).verifier == "prm"
    assert ponder(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_the_token_share_holds_with_a_margin_of_standard_errors(tmp_path):
    # a cap of 260 tokens: the router that solves every problem spends 256 +- 18 held out, inside the cap as a point
    # estimate but not with 1.645 standard errors on top, so the margin takes a cheaper one
    point = train(tmp_path, objective="within_tokens", token_ratio=0.65, token_confidence=0.0)
    margin = train(tmp_path, objective="within_tokens", token_ratio=0.65)
    assert point["training"]["cross_validated"]["accuracy"] == 1.0
    cv = margin["training"]["cross_validated"]
    assert margin["training"]["token_confidence"] == 1.645 and cv["over_cap_se"] > 0
    assert (
        cv["tokens"] + 1.645 * cv["over_cap_se"]
        <= 260
        < point["training"]["cross_validated"]["tokens"] + 1.645 * cv["over_cap_se"]
    )
    assert 0.5 < cv["accuracy"] < 1.0


@pytest.mark.parametrize(("holdout", "widening"), [(0, 1.0), (100, 2**0.5), (200, 1.5**0.5)])
def test_the_margin_adds_the_noise_of_the_set_the_share_is_promised_on(tmp_path, holdout, widening):
    # the reference (best-of-16) spends 400 on every problem, so the tokens over the cap vary as the tokens do; the
    # folds' estimate is over the 100 logged problems, a fresh set of `holdout` adds its own sampling noise
    router = train(tmp_path, objective="within_tokens", token_ratio=0.65, holdout_problems=holdout)
    assert router["training"]["holdout_problems"] == holdout
    for point in router["training"]["sweep"]:
        assert point["over_cap_se"] == pytest.approx(widening * point["tokens_se"], abs=0.11)


def test_the_margin_is_on_the_share_of_the_same_problems_reference(tmp_path):
    # a reference that spends 4x more on the hard problems: a router that spends more where it does varies less
    # against its share than its tokens do; one that spends the same everywhere varies against it all the same
    logs = write_logs(tmp_path / "logs")
    request = {"strategy": "best_of_n", "verifier": "prm", "budget": {"max_samples": 64}}
    rows = [row("bon64", seed, True, 1600 if seed % 2 else 400, request) for seed in range(100)]
    (logs / "bon64.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    router = train(tmp_path, logs=logs, objective="within_tokens", token_ratio=0.3, holdout_problems=0)
    assert router["training"]["reference"] == {"arm": "bon64", "accuracy": 1.0, "tokens": 1000.0}
    sweep = router["training"]["sweep"]
    solves_all, probe_only = sweep[0], sweep[-1]  # lambda 0: best-of-16 where needed; the highest: the probe
    assert solves_all["accuracy"] == 1.0 and solves_all["over_cap_se"] < 0.7 * solves_all["tokens_se"]
    assert probe_only["tokens"] == 40.0 and probe_only["tokens_se"] == 0.0 and probe_only["over_cap_se"] > 15


@pytest.mark.parametrize(("flag", "value"), [("token_confidence", -1.0), ("holdout_problems", -1)])
def test_a_negative_margin_setting_is_refused(tmp_path, flag, value):
    with pytest.raises(TrainingInputError, match="--" + flag.replace("_", "-")):
        train(tmp_path, objective="within_tokens", **{flag: value})
