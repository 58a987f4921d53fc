"""Merge ``ponder eval`` summaries run by run and print strategies.md's tables (by budget; by level at 16 and 64).

    python docs/results/strategies/merge_tables.py OUT_DIR... --runs-file docs/results/strategies.yaml \
        --out docs/results/strategies

Later folders win for a run measured twice. Writes the merged ``summary.json``, ``summary.md`` and plots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from ponder.eval.report import write_summary

BUDGETS = (1, 4, 16, 64)


def merged(folders: list[Path], order: list[str]) -> dict:
    runs: dict[str, dict] = {}
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    for summary in summaries:
        runs.update({r["name"]: r for r in summary["runs"]})
    rank = {name: i for i, name in enumerate(order)}
    ordered = sorted(runs.values(), key=lambda r: (rank.get(r["series"], len(rank)), r["name"]))
    # the first folder's header; every command, so that a re-measured run says where it came from
    commands = list(dict.fromkeys(s["command"] for s in summaries))
    return {**summaries[0], "command": "`, then `".join(commands), "runs": ordered}


def _cell(run: dict | None) -> str:
    if run is None:
        return ""
    o = run["overall"]
    return f"{100 * o['accuracy']:.1f}% ({o['mean_completion_tokens']:.0f})"


def tables(summary: dict) -> str:
    by_series: dict[str, dict[int | None, dict]] = {}
    for run in summary["runs"]:
        budget = (run["request"].get("budget") or {}).get("max_samples")
        by_series.setdefault(run["series"], {})[budget] = run
    lines = ["| strategy (verifier) | 1 | 4 | 16 | 64 |", "|---|---|---|---|---|"]
    for series, runs in by_series.items():
        if None in runs:
            lines.append(f"| {series} | {_cell(runs[None])} |  |  |  |")
        else:
            lines.append(f"| {series} | " + " | ".join(_cell(runs.get(b)) for b in BUDGETS) + " |")
    for budget in (16, 64):
        lines += [
            "",
            f"At budget {budget}:",
            "",
            "| strategy (verifier) | L1 | L2 | L3 | L4 | L5 | all |",
            "|---|---|---|---|---|---|---|",
        ]
        for series, runs in by_series.items():
            run = runs.get(None) or runs.get(budget)
            if run is None:
                continue
            levels = " | ".join(f"{100 * run['by_level'][str(lv)]['accuracy']:.1f}" for lv in range(1, 6))
            lines.append(f"| {series} | {levels} | {100 * run['overall']['accuracy']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--runs-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = yaml.safe_load(args.runs_file.read_text())
    order = [r.get("series", r["name"]) for r in spec["runs"]]
    summary = merged(args.folders, order)
    args.out.mkdir(parents=True, exist_ok=True)
    write_summary(summary, args.out)
    print(tables(summary))


if __name__ == "__main__":
    main()
