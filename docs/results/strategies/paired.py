"""Paired comparison of two eval runs on the same problems: discordant counts, exact McNemar p, bootstrap interval.

Run from the repository root after the strategies eval (strategies.md):
    python docs/results/strategies/paired.py out/strategies-v3 beam-prm bon-prm 4 16 64
For each budget, reads ``RUN.max_samples=B.jsonl`` of both runs, pairs the rows by problem seed and prints a
markdown row: problems only the first run solves, only the second, the accuracy difference in points, the two-sided
exact McNemar p-value, and a 95% percentile bootstrap interval of the difference (10,000 resamples of problems).
Two runs from different folders (another model, another router) are compared by their files:
    python docs/results/strategies/paired.py out/routing-test/auto.jsonl out/strategies/bon-prm.max_samples=64.jsonl
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path


def outcomes(path: Path) -> dict[int, bool]:
    return {row["seed"]: bool(row["correct"]) for row in map(json.loads, path.read_text().splitlines())}


def compare(
    first: dict[int, bool], second: dict[int, bool], resamples: int = 10_000
) -> tuple[int, int, float, float, float, float]:
    seeds = sorted(first)
    if sorted(second) != seeds:
        raise SystemExit("the two runs did not answer the same problems")
    only_first = sum(first[s] and not second[s] for s in seeds)
    only_second = sum(second[s] and not first[s] for s in seeds)
    discordant = only_first + only_second
    tail = sum(math.comb(discordant, i) for i in range(min(only_first, only_second) + 1))
    p = min(1.0, 2 * tail / 2**discordant) if discordant else 1.0
    delta = [first[s] - second[s] for s in seeds]
    rng = random.Random(0)
    boot = sorted(sum(rng.choice(delta) for _ in seeds) / len(seeds) * 100 for _ in range(resamples))
    diff = sum(delta) / len(seeds) * 100
    return only_first, only_second, diff, p, boot[int(0.025 * resamples)], boot[int(0.975 * resamples)]


COLUMNS = "difference (points) | McNemar p | 95% bootstrap interval |"


def row(label: str, first: Path, second: Path) -> str:
    n1, n2, diff, p, low, high = compare(outcomes(first), outcomes(second))
    return f"| {label} | {n1} | {n2} | {diff:+.1f} | {p:.2f} | [{low:+.1f}, {high:+.1f}] |"


def main(*args: str) -> None:
    if len(args) == 2:  # two run files
        first, second = map(Path, args)
        print(f"| runs | only the first | only the second | {COLUMNS}")
        print("|---|---|---|---|---|---|")
        print(row(f"{first.stem} vs {second.stem}", first, second))
        return
    folder, first_run, second_run, *budgets = args
    print(f"| budget | only {first_run} | only {second_run} | {COLUMNS}")
    print("|---|---|---|---|---|---|")
    for budget in budgets:
        a, b = (Path(folder) / f"{run}.max_samples={budget}.jsonl" for run in (first_run, second_run))
        print(row(budget, a, b))


if __name__ == "__main__":
    main(*sys.argv[1:])
