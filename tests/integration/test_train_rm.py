"""``ponder train rm`` end to end for a few steps: BT on policy samples (real HF engine), BT and PL on user files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.tasks import generate_problems, render_trace

POLICY = Path(__file__).resolve().parents[2] / "ponder" / "models" / "policy"
ORM_SIDECAR = {
    "kind": "orm",
    "format": "sequence_classification",
    "number_order": "as_written",
    "step_separator": "\n",
    "answer_format": "final_number",
    "think_tags": ["<think>", "</think>"],
}
# A handful of level-2/3 problems, sampled through the real transformers engine: mixed right and wrong answers.
SAMPLES = ["--engine", "hf", "--levels", "2", "3", "--train-problems", "6", "--k", "6"]
EVAL = ["--eval-problems", "4", "--eval-k", "4"]
FEW_STEPS = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--threads", "2"]


def _load(out: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(out), AutoModelForSequenceClassification.from_pretrained(out)


def _scores(out: Path, completions: list[str]) -> list[float]:
    from ponder.training.verifier_metrics import orm_scores

    problem = generate_problems("test", 1, [2])[0]
    records = [{"messages": problem.prompt_messages(), "completion": c} for c in completions]
    return orm_scores(out, records)


def test_bt_on_policy_samples_writes_a_loadable_orm_with_metrics(tmp_path: Path):
    out = tmp_path / "orm"
    samples, held_out = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    argv = ["train", "rm", "--output-dir", str(out), "--samples", str(samples), "--eval-samples", str(held_out)]
    assert ponder([*argv, *SAMPLES, *EVAL, *FEW_STEPS]) == 0
    tokenizer, model = _load(out)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id == 0
    assert tokenizer.chat_template and (out / "chat_template.jinja").is_file()
    assert json.loads((out / "ponder.json").read_text()) == ORM_SIDECAR
    header = json.loads(samples.read_text().splitlines()[0])["header"]
    assert header["count"] == 6 and header["k"] == 6 and header["split"] == "train"
    assert len(samples.read_text().splitlines()) == 1 + 36
    report = json.loads((out / "eval.json").read_text())
    assert report["kind"] == "orm" and report["baselines"]["k"] == 4 and report["baselines"]["problems"] == 4
    assert 0 <= report["selection"]["best_of_k"] <= report["baselines"]["pass@4"]
    config = json.loads((out / "training_config.json").read_text())
    assert config["steps"] == 2 and config["data"]["train"]["pairs"] > 0
    card = (out / "README.md").read_text()
    assert "Pairwise accuracy" in card and "ponder train rm --output-dir" in card and "| all | 4 |" in card
    scores = _scores(out, [render_trace(generate_problems("test", 1, [2])[0]), "<think>1+1=3\n</think>3"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
    assert (out / "logs" / "train.jsonl").read_text().count('"loss"') >= 2


def test_number_order_is_trained_recorded_and_served_alike(tmp_path: Path):
    """--number-order reversed: the training pairs, the sidecar and the served ORM all see 467 as 764."""
    from ponder.verifiers.formats import orm_text
    from ponder.verifiers.orm import OutcomeRewardModel

    p = generate_problems("train", 1, [2])[0]
    data = tmp_path / "data.jsonl"
    row = {"prompt": p.prompt_messages(), "chosen": render_trace(p), "rejected": "<think>467+914=1381\n</think>1"}
    data.write_text(json.dumps(row) + "\n")
    out = tmp_path / "orm"
    argv = ["train", "rm", "--output-dir", str(out), "--dataset", str(data), "--number-order", "reversed"]
    assert ponder([*argv, *FEW_STEPS]) == 0
    assert json.loads((out / "ponder.json").read_text())["number_order"] == "reversed"
    verifier = OutcomeRewardModel(out, device="cpu")
    seen = verifier.tokenizer.decode(verifier.encode([{"role": "user", "content": "What is 12+7?"}], "<think>467"))
    assert seen == orm_text(verifier.tokenizer, [{"role": "user", "content": "What is 21+7?"}], "<think>764")


@pytest.mark.parametrize("loss", ["bt", "pl"])
def test_on_a_user_file(tmp_path: Path, loss: str):
    problems = generate_problems("train", 6, [2])
    rows = []
    for p in problems:
        right, wrong = render_trace(p), f"<think>1+1=3\n</think>{int(p.answer) + 1}"
        if loss == "bt":
            rows.append({"prompt": p.prompt_messages(), "chosen": right, "rejected": wrong})
        else:
            rows.append({"prompt": p.question, "completions": [wrong, right, "<think>"], "ranks": [1, 0, 2]})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / loss
    argv = ["train", "rm", "--output-dir", str(out), "--dataset", str(data), "--loss", loss, *FEW_STEPS]
    assert ponder([*argv, "--learning-rate", "1e-3"]) == 0
    config = json.loads((out / "training_config.json").read_text())
    assert config["args"]["loss"] == loss and config["data"]["train"]["source"] == str(data)
    assert not (out / "eval.json").exists()  # user data: nothing arithmetic to measure on
    assert json.loads((out / "ponder.json").read_text())["kind"] == "orm"
    losses = [
        json.loads(line)["loss"] for line in (out / "logs" / "train.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert len(_scores(out, ["<think>1+1=2\n</think>2"])) == 1


def test_pairs_that_all_exceed_max_length_are_refused_clearly(tmp_path: Path, capsys):
    p = generate_problems("train", 1, [2])[0]
    row = {"prompt": p.prompt_messages(), "chosen": render_trace(p), "rejected": "<think>1+1=3\n</think>3"}
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(row) + "\n")
    argv = ["train", "rm", "--output-dir", str(tmp_path / "o"), "--dataset", str(data), "--max-length", "5"]
    assert ponder([*argv, *FEW_STEPS]) == 2
    assert "every training pair is longer than --max-length 5 tokens" in capsys.readouterr().err


def _gold_and_corrupted(split: str, count: int) -> list[dict]:
    """(problem, gold trace, the same with its first step's result off by 3 in the last digit and a wrong answer)."""
    rows = []
    for p in generate_problems(split, count, [2, 3]):
        gold = render_trace(p)
        first, rest = gold.split("\n", 1)
        bad = f"{first[:-1]}{(int(first[-1]) + 3) % 10}\n{rest.rsplit('</think>', 1)[0]}</think>{int(p.answer) + 7}"
        rows.append({"prompt": p.prompt_messages(), "chosen": gold, "rejected": bad})
    return rows


def test_token_min_head_learns_from_outcome_pairs_over_the_bundled_prms_lm(tmp_path: Path):
    """From a zero head (every answer alike), Bradley-Terry on 40 pairs teaches it to rank held-out gold traces
    above corrupted ones; the folder serves through the registry like any ORM."""
    from ponder.training.verifier_metrics import orm_scores
    from ponder.verifiers.orm_pooled import FEATURES, TOKEN_MIN, TokenPooledORM

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _gold_and_corrupted("train", 40)))
    out = tmp_path / "pooled"
    argv = ["train", "rm", "--output-dir", str(out), "--dataset", str(data), "--head", "token-min"]
    argv += ["--base-model", str(POLICY.parent / "prm"), "--number-order", "reversed", "--learning-rate", "0.05"]
    assert ponder([*argv, "--epochs", "10", "--batch-size", "8", "--logging-steps", "10", "--threads", "2"]) == 0
    sidecar = json.loads((out / "ponder.json").read_text())
    assert sidecar["kind"] == "orm" and sidecar["format"] == TOKEN_MIN and sidecar["number_order"] == "reversed"
    assert sidecar["head"]["features"] == list(FEATURES) and any(w != 0 for w in sidecar["head"]["weight"])
    config = json.loads((out / "training_config.json").read_text())
    assert config["steps"] == 50 and config["trained_parameters"] == len(FEATURES) + 1
    assert "--head token-min" in (out / "README.md").read_text()
    held_out = _gold_and_corrupted("test", 8)
    records = [{"messages": r["prompt"], "completion": r[side]} for r in held_out for side in ("chosen", "rejected")]
    scores = orm_scores(out, records)
    assert sum(good > bad for good, bad in zip(scores[::2], scores[1::2], strict=True)) >= 7
    assert isinstance(TokenPooledORM(out, device="cpu"), TokenPooledORM)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--loss", "pl"], "no --loss pl, no LoRA"),
        (["--lora-r", "4"], "no --loss pl, no LoRA"),
        (["--pool-temperature", "0"], "--pool-temperature must be positive"),
    ],
)
def test_token_min_refuses_what_it_cannot_do(tmp_path: Path, capsys, extra: list[str], message: str):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps(_gold_and_corrupted("train", 1)[0]) + "\n")
    argv = ["train", "rm", "--output-dir", str(tmp_path / "o"), "--dataset", str(data), "--head", "token-min"]
    assert ponder([*argv, "--base-model", str(POLICY.parent / "prm"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_token_min_needs_a_causal_lm_to_read_with(tmp_path: Path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps(_gold_and_corrupted("train", 1)[0]) + "\n")
    argv = ["train", "rm", "--output-dir", str(tmp_path / "o"), "--dataset", str(data), "--head", "token-min"]
    assert ponder(argv) == 2
    assert "give it as --base-model" in capsys.readouterr().err
