"""``ponder train sft`` end to end for a few steps, and its refusals of bad input before training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.tasks import generate_problems, render_trace, sft_messages

TINY = [
    "--train-size",
    "16",
    "--eval-size",
    "4",
    "--max-steps",
    "3",
    "--batch-size",
    "4",
    "--logging-steps",
    "1",
    "--hidden-size",
    "64",
    "--num-layers",
    "1",
    "--intermediate-size",
    "128",
]


def test_train_sft_from_scratch_writes_a_loadable_chat_model(tmp_path: Path):
    out = tmp_path / "policy"
    proc = subprocess.run(
        [sys.executable, "-m", "ponder.cli", "train", "sft", "--output-dir", str(out), *TINY],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.head_dim == 64
    assert tokenizer.chat_template and "{% generation %}" in tokenizer.chat_template
    problem = generate_problems("test", 1)[0]
    text = tokenizer.apply_chat_template(sft_messages(problem), tokenize=False)
    assert text == f"<|user|>{problem.question}<|end|><|assistant|>{render_trace(problem)}<|end|>"
    assert len(tokenizer.tokenize("<think>")) == 1 and len(tokenizer.tokenize("</think>")) == 1
    assert json.loads((out / "ponder.json").read_text()) == {
        "step_separator": "\n",
        "answer_format": "final_number",
        "think_tags": ["<think>", "</think>"],
        "default_verifier": "prm",
    }
    config = json.loads((out / "training_config.json").read_text())
    assert config["steps"] == 3 and config["data"]["train"]["count"] == 16
    assert (out / "logs" / "train.log").stat().st_size > 0
    assert len((out / "logs" / "train.jsonl").read_text().splitlines()) >= 3
    assert not (out / "checkpoints").exists() and not (out / "training_args.bin").exists()

    # the rest of `make models` in miniature: measure it, then write its model card
    from ponder.training.measure import main as measure
    from ponder.training.model_card import write_card

    argv = [str(out), "--count", "5", "--samples", "2", "--max-new-tokens", "8", "--out", str(out / "eval.json")]
    assert measure(argv) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["overall"]["n"] == 5 and set(result["by_level"]) == {"1", "2", "3", "4", "5"}
    assert all(0 <= result["overall"][k] <= 1 for k in ("greedy", "pass@2", "sample_acc"))
    card = write_card(out).read_text()
    assert "| all | 5 |" in card and "ponder train sft --output-dir" in card and "[200,000,000, 201,000,000)" in card


def test_train_sft_on_a_messages_file_from_an_existing_model(tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": sft_messages(p)}) + "\n" for p in generate_problems("train", 12)))
    out = tmp_path / "tuned"
    argv = [
        "train",
        "sft",
        "--output-dir",
        str(out),
        "--dataset",
        str(data),
        "--init-model",
        str(tiny_model_dir),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--eval-size",
        "0",
    ]
    assert ponder(argv) == 0
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    assert json.loads((out / "training_config.json").read_text())["data"]["rows"] == 12


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert ponder(["train", "sft", *argv]) == 2
    return capsys.readouterr().err


def test_refuses_a_dataset_without_the_messages_column(tmp_path: Path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "1+1", "completion": "2"}) + "\n")
    err = _refused(["--output-dir", str(tmp_path / "out"), "--dataset", str(data)], capsys)
    assert "missing column(s) ['messages']" in err and "found ['completion', 'prompt']" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"messages": [{"role": "user", "content": "hi"}]}], "must end with an assistant turn"),
        ([{"messages": "hi"}], "non-empty list of turns"),
        ([{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}], "role must be"),
    ],
)
def test_refuses_malformed_messages(tmp_path: Path, capsys, rows, message):
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert message in _refused(["--output-dir", str(tmp_path / "out"), "--dataset", str(data)], capsys)


def test_refuses_missing_and_unsupported_dataset_files(tmp_path: Path, capsys):
    assert "does not exist" in _refused(
        ["--output-dir", str(tmp_path), "--dataset", str(tmp_path / "no.jsonl")], capsys
    )
    (tmp_path / "data.csv").write_text("messages\n")
    assert "unsupported format" in _refused(
        ["--output-dir", str(tmp_path / "o"), "--dataset", str(tmp_path / "data.csv")], capsys
    )


def test_refuses_a_model_folder_that_is_not_a_model(tmp_path: Path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    err = _refused(["--output-dir", str(tmp_path / "out"), "--init-model", str(folder)], capsys)
    assert "is not a model folder: it has no config.json" in err
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert "not a causal language model" in _refused(
        ["--output-dir", str(tmp_path / "o"), "--init-model", str(folder)], capsys
    )


def test_refuses_a_non_empty_output_folder_and_bad_numbers(tmp_path: Path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert "pass --overwrite" in _refused(["--output-dir", str(tmp_path)], capsys)
    assert "multiple of 64" in _refused(["--output-dir", str(tmp_path / "o"), "--hidden-size", "96"], capsys)
    assert "--max-steps" in _refused(["--output-dir", str(tmp_path / "o"), "--max-steps", "0"], capsys)
    out = str(tmp_path / "o")
    assert "--off-topic-fraction" in _refused(["--output-dir", out, "--off-topic-fraction", "1.5"], capsys)
    assert "--natural-fraction" in _refused(["--output-dir", out, "--natural-fraction", "-0.5"], capsys)


def test_help_lists_every_config_field(capsys):
    from dataclasses import fields

    from ponder.training.sft_config import SFTArgs

    with pytest.raises(SystemExit):
        ponder(["train", "sft", "--help"])
    text = capsys.readouterr().out
    for f in fields(SFTArgs):
        assert "--" + f.name.replace("_", "-") in text
    assert "Passes over the training data." in text
