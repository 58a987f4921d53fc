"""``ponder train prm`` end to end for a few steps: exact and Monte Carlo labels (real HF engine), a user file."""

from __future__ import annotations

import json
from pathlib import Path

from ponder.cli.main import main as ponder
from ponder.tasks import generate_problems, gold_steps

PRM_SIDECAR = {
    "kind": "prm",
    "format": "token_classification",
    "step_separator": "\n",
    "score": "sigmoid",
    "answer_format": "final_number",
    "think_tags": ["<think>", "</think>"],
}
SAMPLES = ["--engine", "hf", "--levels", "2", "3", "--train-problems", "4", "--k", "4"]
FEW_STEPS = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--threads", "2"]


def _step_scores(out: Path, steps_list: list[list[str]]) -> list[list[float]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ponder.training.verifier_metrics import prm_step_scores

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert type(model).__name__ == "LlamaForTokenClassification" and model.config.num_labels == 1
    problem = generate_problems("test", 1, [3])[0]
    return prm_step_scores(model, tokenizer, [{"messages": problem.prompt_messages(), "steps": s} for s in steps_list])


def _scores_are_per_step_probabilities(out: Path) -> None:
    problem = generate_problems("test", 1, [3])[0]
    steps = [gold_steps(problem), ["1+1=3"], gold_steps(problem)[:1]]
    scores = _step_scores(out, steps)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    assert all(0.0 <= x <= 1.0 for row in scores for x in row)


def test_exact_labels_on_policy_samples_with_held_out_metrics(tmp_path: Path):
    out = tmp_path / "prm"
    argv = ["train", "prm", "--output-dir", str(out), "--samples", str(tmp_path / "t.jsonl")]
    argv += ["--eval-samples", str(tmp_path / "v.jsonl"), "--eval-problems", "3", "--eval-k", "4"]
    assert ponder([*argv, *SAMPLES, *FEW_STEPS]) == 0
    assert json.loads((out / "ponder.json").read_text()) == PRM_SIDECAR
    report = json.loads((out / "eval.json").read_text())
    assert report["kind"] == "prm" and 0 <= report["step_accuracy"] <= 1
    assert {"selection_min", "selection_last", "baselines"} <= set(report)
    card = (out / "README.md").read_text()
    assert "Step accuracy against the exact labels" in card and "PRM-min best-of-4" in card
    _scores_are_per_step_probabilities(out)


def test_mc_soft_labels_roll_out_through_the_engine(tmp_path: Path):
    out, samples = tmp_path / "prm", tmp_path / "t.jsonl"
    argv = ["train", "prm", "--output-dir", str(out), "--samples", str(samples), "--labels", "mc-soft"]
    assert ponder([*argv, "--mc-rollouts", "2", "--eval-problems", "0", *SAMPLES, *FEW_STEPS]) == 0
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert rows[0]["header"]["mc_rollouts"] == 2
    for r in rows[1:]:
        assert len(r["mc"]) == len(r["steps"]) and all(f in (0.0, 0.5, 1.0) for f in r["mc"])
    config = json.loads((out / "training_config.json").read_text())
    assert config["args"]["labels"] == "mc-soft" and config["data"]["train"]["steps"] > 0
    _scores_are_per_step_probabilities(out)


def test_on_a_user_file(tmp_path: Path):
    rows = []
    for p in generate_problems("train", 6, [3]):
        steps = gold_steps(p)
        rows.append({"prompt": p.prompt_messages(), "steps": steps, "labels": [True] * len(steps)})
        rows.append({"prompt": p.question, "steps": [steps[0], "1+1=3"], "labels": [1.0, 0.0]})
    data = tmp_path / "steps.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prm"
    assert ponder(["train", "prm", "--output-dir", str(out), "--dataset", str(data), *FEW_STEPS]) == 0
    assert json.loads((out / "training_config.json").read_text())["data"]["train"]["solutions"] == 12
    _scores_are_per_step_probabilities(out)
