"""Every policy trainer end to end on the bundled policy for a few steps: the folder it writes loads and generates.

``prefs`` samples the policy through the real transformers engine; ``dpo``, ``simpo`` and ``orpo`` learn from pairs;
``grpo``, ``cispo`` and ``ppo`` roll out and score with Ponder's verifiers; ``rft`` searches with ``best_of_n``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.tasks import generate_problems, render_trace

POLICY = Path(__file__).resolve().parents[2] / "ponder" / "models" / "policy"
FEW = ["--max-steps", "2", "--logging-steps", "1", "--threads", "2"]
LORA = ["--lora-r", "4", "--lora-alpha", "8"]
ROLLOUTS = ["--train-size", "8", "--levels", "1", "2", "--max-completion-length", "32"]
# Hard problems and the PRM's graded scores, so that a group's rewards differ: the bundled policy answers easy ones
# the same way every time, and the scorer and the calculator give every sample of a group the same 0 or 1.
HARD_ROLLOUTS = ["--train-size", "8", "--levels", "4", "5", "--max-completion-length", "96"]


def check_policy_folder(out: Path, command: str, steps: int) -> dict:
    """The folder is a plain (merged) policy with its sidecar that transformers loads and that answers a question."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert json.loads((out / "ponder.json").read_text()) == json.loads((POLICY / "ponder.json").read_text())
    assert not (out / "adapter_config.json").exists() and not (out / "checkpoints").exists()
    config = json.loads((out / "training_config.json").read_text())
    assert config["command"] == command and config["steps"] == steps
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(POLICY)
    assert model.state_dict().keys() == base.state_dict().keys()
    assert any(not a.equal(b) for a, b in zip(model.parameters(), base.parameters(), strict=True)), "nothing trained"
    problem = generate_problems("test", 1, [1])[0]
    ids = tokenizer.apply_chat_template(problem.prompt_messages(), add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not hasattr(ids, "shape") else ids
    text = tokenizer.decode(model.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1] :])
    assert text.startswith("<think>")
    return config


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gold traces over wrong answers of similar length, in the `ponder train prefs` format."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = []
    for p in generate_problems("train", 8, [1, 2]):
        right = render_trace(p)
        wrong = right[: -len(p.answer)] + str(int(p.answer) + 1)
        rows.append({"prompt": p.prompt_messages(), "chosen": right, "rejected": wrong})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prefs_ranks_policy_samples_into_length_matched_pairs(tmp_path: Path):
    out = tmp_path / "prefs.jsonl"
    argv = ["train", "prefs", "--output", str(out), "--engine", "hf", "--problems", "4", "--levels", "3", "--k", "6"]
    assert ponder([*argv, "--verifier", "scorer", "--max-length-ratio", "1.5"]) == 0
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert pairs and all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert all(
        max(len(p["chosen"]), len(p["rejected"])) <= 1.5 * min(len(p["chosen"]), len(p["rejected"])) for p in pairs
    )
    assert all(p["prompt"][0]["role"] == "user" and p["chosen"] != p["rejected"] for p in pairs)
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["pairs"] == len(pairs) and summary["samples"] == 24 and summary["ranked_by"] == "scorer"


@pytest.mark.parametrize(("algo", "lora"), [("dpo", True), ("simpo", False), ("orpo", False)])
def test_offline_preference_trainers(tmp_path: Path, pairs_file: Path, algo: str, lora: bool):
    out = tmp_path / algo
    argv = ["train", algo, "--output-dir", str(out), "--dataset", str(pairs_file), "--batch-size", "2", *FEW]
    assert ponder([*argv, "--learning-rate", "1e-3", *(LORA if lora else [])]) == 0
    config = check_policy_folder(out, f"ponder train {algo}", 2)
    assert config["data"]["pairs"] == 8 and ("lora" in config) == lora
    assert (out / "logs" / "train.jsonl").read_text().count('"loss"') >= 2


@pytest.mark.parametrize(("algo", "lora"), [("grpo", False), ("cispo", True)])
def test_group_rl_trainers_on_verifier_rewards(tmp_path: Path, algo: str, lora: bool):
    out = tmp_path / algo
    argv = ["train", algo, "--output-dir", str(out), *HARD_ROLLOUTS, "--batch-size", "4", "--num-generations", "4"]
    argv += [
        *FEW,
        "--reward",
        "scorer=1.0",
        "calculator=0.5",
        "prm=0.5",
        "--learning-rate",
        "1e-3",
        "--temperature",
        "1.5",
    ]
    assert ponder([*argv, *(LORA if lora else [])]) == 0
    config = check_policy_folder(out, f"ponder train {algo}", 2)
    assert config["data"]["rewards"] == {"scorer": 1.0, "calculator": 0.5, "prm": 0.5}
    assert config["data"]["loss_type"] == ("cispo" if algo == "cispo" else "dapo")
    assert config["args"]["epsilon_high"] == (5.0 if algo == "cispo" else 0.28)
    logs = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert "rewards/scorer/mean" in logs[0] and "rewards/calculator/mean" in logs[0]


def test_ppo(tmp_path: Path):
    out = tmp_path / "ppo"
    argv = ["train", "ppo", "--output-dir", str(out), *ROLLOUTS, "--batch-size", "4", *FEW, "--learning-rate", "1e-3"]
    assert ponder([*argv, "--reward", "scorer=1.0", "calculator=0.5", "--temperature", "1.5"]) == 0
    check_policy_folder(out, "ponder train ppo", 2)
    logs = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2]
    assert {"reward", "kl", "policy_loss", "value_loss", "clipfrac"} <= set(logs[0])
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout comes from the reference itself


def test_rft_searches_keeps_the_right_answers_and_fine_tunes(tmp_path: Path):
    out = tmp_path / "rft"
    argv = ["train", "rft", "--output-dir", str(out), "--engine", "hf", "--problems", "4", "--levels", "1", "2"]
    argv += ["--rounds", "2", "--samples", "4", "--batch-size", "2", *FEW, *LORA, "--learning-rate", "1e-3"]
    assert ponder(argv) == 0
    config = check_policy_folder(out, "ponder train rft", 4)
    assert [r["round"] for r in config["rounds"]] == [1, 2] and all(r["kept"] > 0 for r in config["rounds"])
    problems = {p.question: p for p in generate_problems("train", 8, [1, 2])}
    for line in (out / "rounds" / "1" / "kept.jsonl").read_text().splitlines():
        messages = json.loads(line)["messages"]
        from ponder.tasks import grade_output

        assert grade_output(problems[messages[0]["content"]], messages[1]["content"])  # only right answers kept


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cispo", "--batch-size", "6", "--num-generations", "4"], "must be a multiple of --num-generations"),
        (["grpo", "--reward", "judge=1"], "unknown term 'judge'"),
        (["ppo", "--lam", "1.5"], "--lam must be in [0, 1]"),
        (["dpo", "--dataset", "missing.jsonl"], "does not exist"),
        (["orpo", "--dataset", "PAIRS", "--qlora", "--lora-r", "8"], "--qlora needs a CUDA GPU"),
        (["rft", "--server", "http://127.0.0.1:9/v1", "--rounds", "2"], "use --rounds 1 with --server"),
        (["rft", "--strategy", "dvts", "--verifier", "orm"], "needs a step verifier"),
        (["rft", "--strategy", "dvts", "--verifier", "ORM"], "needs a step verifier"),
        (["rft", "--verifier", "scorer"], "ranks answers without knowing the right one"),
        (["grpo", "--dataset", "PAIRS"], "row 0 has no `answer` column, which the scorer reward grades against"),
        (["ppo", "--grad-accum", "2"], "--grad-accum is not used by ppo"),
        (["grpo", "--use-vllm"], "--use-vllm generates on the GPU"),
    ],
)
def test_bad_input_is_refused_before_training(tmp_path: Path, capsys, pairs_file: Path, argv, message):
    import torch

    if ("--qlora" in argv or "--use-vllm" in argv) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = [str(pairs_file) if a == "PAIRS" else str(POLICY.parent / "orm") if a == "ORM" else a for a in argv]
    assert ponder(["train", *argv, "--output-dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_pairs_file_is_refused_naming_the_row(tmp_path: Path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "1+1?", "chosen": "2"}) + "\n")
    assert ponder(["train", "simpo", "--output-dir", str(tmp_path / "o"), "--dataset", str(data)]) == 2
    assert "missing column(s) ['rejected']" in capsys.readouterr().err


def test_every_trainer_lists_its_flags_with_help(capsys):
    for algo in ("prefs", "dpo", "simpo", "orpo", "grpo", "cispo", "ppo", "rft"):
        with pytest.raises(SystemExit):
            ponder(["train", algo, "--help"])
        text = capsys.readouterr().out
        assert "--output" in text and "--seed" in text
        if algo != "prefs":
            assert "--lora-r" in text and "--qlora" in text and "--learning-rate" in text.replace("_", "-")


def test_rft_with_dvts_guided_by_the_calculator(tmp_path: Path):
    out = tmp_path / "rft-dvts"
    argv = [
        "train",
        "rft",
        "--output-dir",
        str(out),
        "--engine",
        "hf",
        "--strategy",
        "dvts",
        "--verifier",
        "calculator",
    ]
    argv += ["--problems", "3", "--levels", "1", "--rounds", "1", "--samples", "4", "--batch-size", "2", *FEW]
    assert ponder([*argv, "--learning-rate", "1e-3"]) == 0
    config = check_policy_folder(out, "ponder train rft", 2)
    assert config["search"]["strategy"] == "dvts" and config["rounds"][0]["kept"] > 0
