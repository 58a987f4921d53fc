"""Paired comparison of two eval runs on the same problems: discordant counts, exact McNemar p, bootstrap interval.

Run from the repository root after the strategies eval (strategies.md):
    python docs/results/strategies/paired.py out/strategies-v3 beam-prm bon-prm 4 16 64
For each budget, reads ``RUN.max_samples=B.jsonl`` of both runs, pairs the rows by problem seed and prints a
markdown row: problems only the first run solves, only the second, the accuracy difference in points, the two-sided
exact McNemar p-value, and a 95% percentile bootstrap interval of the difference (10,000 resamples of problems).
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


def main(folder: str, first: str, second: str, *budgets: str) -> None:
    print(f"| budget | only {first} | only {second} | difference (points) | McNemar p | 95% bootstrap interval |")
    print("|---|---|---|---|---|---|")
    for budget in budgets:
        a, b = (outcomes(Path(folder) / f"{run}.max_samples={budget}.jsonl") for run in (first, second))
        n1, n2, diff, p, low, high = compare(a, b)
        print(f"| {budget} | {n1} | {n2} | {diff:+.1f} | {p:.2f} | [{low:+.1f}, {high:+.1f}] |")


if __name__ == "__main__":
    main(*sys.argv[1:])
