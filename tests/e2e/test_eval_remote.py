"""``ponder eval --base-url`` against a real ``ponder serve`` process (transformers engine, tiny random model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
PONDER = str(Path(sys.executable).parent / "ponder")


def test_eval_over_http(ponder_server, tmp_path):
    url = ponder_server("hf")
    argv = [
        PONDER, "eval", "--base-url", f"{url}/v1", "--levels", "1", "--count", "2", "--max-tokens", "8",
        "--run", "greedy:temperature=0", "--run", "unknown:strategy=no_such_strategy",
        "--concurrency", "2", "--warmup", "0", "--no-progress", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "greedy.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["error"] is None
        assert 0 < row["completion_tokens"] <= 8  # a random model: whatever it says, usage is metered
        assert row["spent"]["samples"] == 1 and row["spent"]["tokens"] == row["completion_tokens"]
    failed = [json.loads(line) for line in (tmp_path / "unknown.jsonl").read_text().splitlines()]
    assert all(r["error"].startswith("HTTP 400: Unknown strategy 'no_such_strategy'") for r in failed)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["target"] == f"{url}/v1" and summary["model"] == "tiny"
    assert (tmp_path / "accuracy_vs_tokens.png").exists()
    assert "| greedy | max_tokens=8, temperature=0 | 2 |" in proc.stdout
