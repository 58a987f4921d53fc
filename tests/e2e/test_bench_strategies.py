"""`ponder bench strategies` end to end on the bundled policy and verifiers over vLLM's CPU build."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (ROOT / "ponder" / "models" / "policy").is_dir(), reason="no bundled policy"),
]


def test_bench_strategies_times_every_arm_and_reports_prefix_cache_hits(tmp_path: Path):
    pytest.importorskip("vllm")
    out = tmp_path / "bench.md"
    argv = ["bench", "strategies", "--requests", "2", "--warmup", "0", "--samples", "4", "--cache-requests", "1"]
    code = f"from ponder.cli.main import main; raise SystemExit(main({[*argv, '--out', str(out)]!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| one sample (strategy none)",
        "| n=4 samples, no selection (strategy none)",
        "| best_of_n N=4, ORM",
        "| best_of_n N=4, ORM, scored as they finish",
        "| best_of_n N=4, PRM",
        "| best_of_n N=4, PRM, scored as they finish",
        "| best_of_n N=4, calculator",
        "| beam_search N=4, PRM",
        "| best_of_n N=4, PRM, adaptive",
        "| dvts N=4, PRM",
        "| dvts N=4, PRM, adaptive, one subtree a wave",
    ]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert cells[1] == "2" and float(cells[3]) > 0 and re.fullmatch(r"\d+\.\d\dx", cells[5])
    beam_hits = float(rows[7].strip("| ").split(" | ")[6].rstrip("%"))
    assert beam_hits > 0  # beam search continues paths from cached prefixes
