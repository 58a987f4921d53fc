"""ponder eval aggregation and reports over hand-made rows: accuracy, token and latency means, tables, plots."""

from __future__ import annotations

import json

import pytest

from ponder.eval.report import markdown, summarize, summarize_run, write_summary
from ponder.eval.specs import RunSpec


def row(level: int, correct: bool, tokens: int | None = 10, latency: float = 1.0, error: str | None = None, **kw):
    return {
        "run": "r",
        "level": level,
        "task": kw.get("task", "chain_sum"),
        "correct": correct,
        "score": 1.0 if correct else 0.0,
        "completion_tokens": tokens,
        "reasoning_tokens": kw.get("reasoning_tokens"),
        "spent": None if error else {"samples": kw.get("samples", 1), "tokens": tokens},
        "latency_s": latency,
        "error": error,
        "choices": 0 if error else kw.get("choices", 1),
        "choices_correct": kw.get("choices_correct", int(correct)),
    }


def test_summarize_counts_errors_as_wrong_and_averages_answered_only():
    rows = [
        row(1, True, 10, 1.0, samples=4),
        row(1, False, 30, 3.0, samples=2),
        row(2, True, 20, 2.0, reasoning_tokens=5),
        row(2, False, None, 0.01, error="HTTP 400: bad"),
    ]
    s = summarize(rows)
    assert s["n"] == 4 and s["correct"] == 2 and s["errors"] == 1
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["mean_completion_tokens"] == pytest.approx(20.0)
    assert s["mean_latency_s"] == pytest.approx(2.0)
    assert s["p50_latency_s"] == pytest.approx(2.0)
    assert s["mean_spent_samples"] == pytest.approx(7 / 3)
    assert s["mean_reasoning_tokens"] == pytest.approx(5.0)
    assert s["mean_score"] == pytest.approx(0.5)


def test_pass_at_n_counts_any_correct_choice():
    rows = [
        row(1, False, 64, choices=4, choices_correct=1),
        row(1, True, 64, choices=4, choices_correct=4),
        row(1, False, 64, choices=4, choices_correct=0),
        row(1, False, None, error="HTTP 500: x"),
    ]
    s = summarize(rows)
    assert s["accuracy"] == pytest.approx(0.25)
    assert s["pass_at_n"] == pytest.approx(0.5)
    assert s["choice_accuracy"] == pytest.approx(5 / 12)


def test_summarize_all_failed_and_empty():
    s = summarize([row(1, False, None, error="HTTP 500: x")])
    assert s["accuracy"] == 0.0 and s["mean_completion_tokens"] is None and s["mean_latency_s"] is None
    assert summarize([])["accuracy"] is None


def test_summarize_run_splits_by_level_and_task():
    rows = [row(1, True), row(1, True, task="products"), row(3, False, task="products")]
    out = summarize_run(RunSpec("greedy", {"temperature": 0}), rows, 1.234)
    assert set(out["by_level"]) == {"1", "3"}
    assert out["by_level"]["1"]["accuracy"] == 1.0 and out["by_level"]["3"]["accuracy"] == 0.0
    assert out["by_task"]["products"]["n"] == 2
    assert out["request"] == {"temperature": 0} and out["wall_s"] == 1.234 and out["first_error"] is None


def _summary(runs):
    return {
        "command": "ponder eval --count 2",
        "date": "2026-01-01 00:00 UTC",
        "target": "in process (hf engine)",
        "model": "m",
        "problems": {"split": "test", "levels": [1, 2], "tasks": ["chain_sum"], "per_level": 2, "total": 4},
        "runs": runs,
    }


def test_markdown_tables_and_outputs(tmp_path):
    rows_a = [row(1, True, 10), row(1, True, 10), row(2, False, 20), row(2, True, 20)]
    failed = row(2, False, None, error="HTTP 400: Unknown strategy")
    rows_b = [row(1, True, 40), row(1, False, 40), failed, row(2, False, 40)]
    runs = [
        summarize_run(RunSpec("bon.max_samples=1", {"strategy": "best_of_n"}, "bon", "max_samples=1"), rows_a, 2.0),
        summarize_run(RunSpec("bon.max_samples=4", {"strategy": "best_of_n"}, "bon", "max_samples=4"), rows_b, 3.0),
    ]
    text = markdown(_summary(runs))
    assert "`ponder eval --count 2`" in text
    assert '| bon.max_samples=1 | strategy="best_of_n" | 4 | 75.0% | 75.0% | 15.0 |' in text
    assert '| bon.max_samples=4 | strategy="best_of_n" | 4 | 25.0% | 25.0% | 40.0 |' in text
    assert "| bon.max_samples=1 | 100.0% | 50.0% | 75.0% |" in text  # accuracy by level
    assert "first error: `HTTP 400: Unknown strategy`" in text

    written = write_summary(_summary(runs), tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "accuracy_vs_tokens.png",
        "accuracy_vs_tokens_by_level.png",
        "summary.json",
        "summary.md",
    ]
    assert (tmp_path / "accuracy_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "summary.json").read_text())["runs"][1]["overall"]["errors"] == 1


def test_one_run_writes_no_plot(tmp_path):
    runs = [summarize_run(RunSpec("only"), [row(1, True)], 1.0)]
    names = sorted(p.name for p in write_summary(_summary(runs), tmp_path))
    assert names == ["summary.json", "summary.md"]
