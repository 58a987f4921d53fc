"""``ponder eval`` in process on the bundled policy (transformers engine): rows, grades, summaries, plots, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.cli.eval import main
from ponder.core.sidecar import default_model
from ponder.tasks import generate_problems, grade

pytestmark = pytest.mark.skipif(not default_model(), reason="needs the bundled policy under ponder/models/policy")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("eval")
    argv = [
        "--engine", "hf", "--levels", "1,2", "--count", "1", "--max-tokens", "48",
        "--run", "greedy:temperature=0",
        "--run", "sampled:temperature=0.8,seed=3",
        "--run", "unknown:strategy=no_such_strategy,budget.max_samples=4",
        "--run", "probe:strategy=compute_optimal,budget.max_samples=2,strategy_options.probe_samples=2",
        "--concurrency", "2", "--warmup", "0", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    return out, main(argv)


def test_writes_every_output(evaluated):
    out, rc = evaluated
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "accuracy_vs_tokens.png",
        "accuracy_vs_tokens_by_level.png",
        "greedy.jsonl",
        "probe.jsonl",
        "sampled.jsonl",
        "summary.json",
        "summary.md",
        "unknown.jsonl",
    ]
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 1000


def test_rows_are_graded_by_reasoning_gym(evaluated):
    out, _ = evaluated
    problems = generate_problems("test", 2, [1, 2])
    for run in ("greedy", "sampled"):
        rows = read_rows(out / f"{run}.jsonl")
        assert [r["index"] for r in rows] == [0, 1]
        for row, problem in zip(rows, problems, strict=True):
            assert row["run"] == run and row["error"] is None
            assert (row["question"], row["reference"], row["level"], row["task"], row["seed"]) == (
                problem.question,
                problem.answer,
                problem.level,
                problem.task,
                problem.seed,
            )
            assert row["score"] == grade(problem, row["answer"])
            assert row["correct"] == (grade(problem, row["answer"]) >= 1.0)
            assert "<think>" not in (row["answer"] or "")  # the server split the reasoning off
            assert row["reasoning"]
            assert 0 < row["completion_tokens"] <= 48
            assert row["spent"]["samples"] == 1 and row["spent"]["tokens"] == row["completion_tokens"]
            assert row["choices"] == 1 and row["choices_correct"] == int(row["correct"])
            assert row["latency_s"] > 0 and row["finish_reason"] in ("stop", "length")
    greedy = read_rows(out / "greedy.jsonl")
    assert greedy[0]["correct"], "the policy solves this level-1 problem greedily (97.5% of level 1 in eval.json)"


def test_rows_record_the_request_and_the_probe_a_router_trains_on(evaluated):
    out, _ = evaluated
    greedy = read_rows(out / "greedy.jsonl")[0]
    assert greedy["request"] == {"temperature": 0, "max_tokens": 48} and greedy["probe"] is None
    for row in read_rows(out / "probe.jsonl"):
        assert row["request"]["strategy"] == "compute_optimal" and row["request"]["budget"] == {"max_samples": 2}
        assert row["routed_to"] == "probe"  # the probe spent the whole budget
        assert row["probe"]["q_numbers"] >= 2 and 0 < row["probe"]["agreement"] <= 1
        assert row["probe"]["tokens_mean"] * 2 == row["completion_tokens"]


def test_an_http_error_is_recorded_per_problem(evaluated):
    out, _ = evaluated
    rows = read_rows(out / "unknown.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["error"].startswith("HTTP 400: Unknown strategy 'no_such_strategy'")
        assert row["correct"] is False and row["answer"] is None and row["completion_tokens"] is None


def test_summaries_agree_with_the_rows(evaluated):
    out, _ = evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == {
        "split": "test",
        "levels": [1, 2],
        "tasks": ["chain_sum"],
        "per_level": 1,
        "offset": 0,
        "total": 2,
    }
    assert summary["command"].startswith("ponder eval --engine hf --levels 1,2 --count 1")
    assert summary["target"] == "in process (hf engine)"
    runs = {r["name"]: r for r in summary["runs"]}
    assert list(runs) == ["greedy", "sampled", "unknown", "probe"]
    for name in ("greedy", "sampled"):
        rows = read_rows(out / f"{name}.jsonl")
        overall = runs[name]["overall"]
        assert overall["accuracy"] == sum(r["correct"] for r in rows) / 2
        assert overall["mean_completion_tokens"] == sum(r["completion_tokens"] for r in rows) / 2
        assert runs[name]["by_level"]["1"]["accuracy"] == float(rows[0]["correct"])
    assert runs["sampled"]["request"] == {"max_tokens": 48, "temperature": 0.8, "seed": 3}
    assert runs["unknown"]["overall"]["errors"] == 2 and runs["unknown"]["overall"]["accuracy"] == 0.0

    text = (out / "summary.md").read_text()
    assert f"`{summary['command']}`" in text
    acc = runs["greedy"]["overall"]["accuracy"]
    assert f"| greedy | max_tokens=48, temperature=0 | 2 | {acc:.1%} | {acc:.1%} |" in text
    assert "## Accuracy by level" in text and "| run | L1 | L2 | all |" in text
    assert "first error: `HTTP 400: Unknown strategy 'no_such_strategy'" in text


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["--run", "a:temprature=0", "--out", str(tmp_path)]) == 2
    assert "unknown request field 'temprature'" in capsys.readouterr().err
    assert main(["--levels", "9", "--out", str(tmp_path)]) == 2
    assert "valid levels are [1, 2, 3, 4, 5]" in capsys.readouterr().err
    assert main(["--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--out", str(tmp_path)]) == 2
    assert "--base-url talks to a running server" in capsys.readouterr().err


def test_an_unreachable_server_is_recorded_row_by_row(tmp_path):
    argv = ["--base-url", "http://127.0.0.1:9/v1", "--model-name", "m", "--levels", "1", "--count", "2"]
    assert main([*argv, "--warmup", "0", "--no-progress", "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "default.jsonl")
    assert [r["error"].split(":")[0] for r in rows] == ["APIConnectionError", "APIConnectionError"]


def test_in_process_enters_the_app_lifespan(tmp_path, capsys):
    """ASGITransport sends no lifespan events; eval enters the lifespan, which starts (here: fails) the engine."""
    argv = ["--engine", "openai", "--upstream", "http://127.0.0.1:9/v1", "--levels", "1", "--count", "1"]
    assert main([*argv, "--warmup", "0", "--no-progress", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ponder eval: error:") and "Traceback" not in err


def test_only_runs_the_named_runs_of_a_runs_file(tmp_path, capsys):
    runs = tmp_path / "runs.json"
    runs.write_text('{"runs": [{"name": "a", "temperature": 0}, {"name": "b", "sweep": {"n": [1, 2]}}]}')
    argv = ["--base-url", "http://127.0.0.1:9/v1", "--model-name", "m", "--levels", "1", "--count", "1"]
    argv += ["--runs-file", str(runs), "--warmup", "0", "--no-progress", "--no-plot"]
    assert main([*argv, "--only", "b", "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").glob("*.jsonl")) == ["b.n=1.jsonl", "b.n=2.jsonl"]
    assert main([*argv, "--only", "c", "--out", str(tmp_path / "o2")]) == 2
    assert "--only: no run or series named c" in capsys.readouterr().err


def test_problems_are_asked_in_the_wording_named(tmp_path):
    """The same problems and answers, asked in a held-out wording and with an instruction after it."""
    argv = ["--base-url", "http://127.0.0.1:9/v1", "--model-name", "m", "--levels", "1,3", "--count", "2"]
    argv += ["--warmup", "0", "--no-progress", "--no-plot"]
    asked = {}
    for wording in ("template", "held_out", "held_out_instruction"):
        assert main([*argv, "--wording", wording, "--out", str(tmp_path / wording)]) == 0
        asked[wording] = read_rows(tmp_path / wording / "default.jsonl")
    template, held_out, instructed = asked["template"], asked["held_out"], asked["held_out_instruction"]
    assert [r["question"] for r in template] == [p.question for p in generate_problems("test", 4, [1, 3])]
    for plain, reworded, with_instruction in zip(template, held_out, instructed, strict=True):
        assert plain["reference"] == reworded["reference"] == with_instruction["reference"]
        assert reworded["question"] != plain["question"] and not reworded["question"].startswith("State the final")
        assert with_instruction["question"].startswith(reworded["question"])
        assert with_instruction["question"].endswith(
            ("Reply with just the answer.", "Show the working.", "Keep it short.")
        )
