"""Upper bounds for any router over the measured arms: how much accuracy a token budget can buy when the router
knows each problem's difficulty (or its outcome) exactly, computed from the per-problem eval logs of the arms.

    .venv/bin/python docs/results/routing/oracle.py out/strategies-new --token-ratio 0.25

For each way of binning the problems (reasoning-gym's level; Snell et al.'s oracle difficulty, quintiles of the share
of arms that solve the problem), every assignment of one arm per bin is tried, and the most accurate one whose mean
tokens stay within ``--token-ratio`` of the reference arm's is printed, with the reference's accuracy for the
comparison. Last, the per-problem oracle: each problem sent to the cheapest arm that solves it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

ARMS = (*(f"{s}-prm.max_samples={n}" for s in ("bon", "dvts", "beam") for n in (4, 16, 64)), "greedy")
REFERENCE = "bon-prm.max_samples=64"


def read_arms(folder: Path, names: tuple[str, ...]) -> dict[str, dict[int, dict]]:
    """Per arm, its rows keyed by problem seed (every arm must hold the same problems)."""
    arms = {}
    for name in names:
        rows = [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        arms[name] = {r["seed"]: r for r in rows}
    seeds = {frozenset(rows) for rows in arms.values()}
    if len(seeds) != 1:
        raise SystemExit("the arms were run on different problems")
    return arms


def assignments(arms: dict[str, dict[int, dict]], bins: dict[int, int]) -> list[tuple[float, float, tuple]]:
    """Every choice of one arm per bin: (accuracy, mean tokens, the arms, easiest bin first)."""
    names, labels = list(arms), sorted(set(bins.values()))
    total = len(bins)
    # per bin and arm: problems solved and tokens spent
    cost = {
        (b, a): (
            sum(arms[a][s]["correct"] for s in bins if bins[s] == b),
            sum(arms[a][s]["completion_tokens"] for s in bins if bins[s] == b),
        )
        for b in labels
        for a in names
    }
    out = []
    for choice in itertools.product(names, repeat=len(labels)):
        solved = sum(cost[(b, a)][0] for b, a in zip(labels, choice, strict=True))
        tokens = sum(cost[(b, a)][1] for b, a in zip(labels, choice, strict=True))
        out.append((solved / total, tokens / total, choice))
    return out


def oracle_difficulty(arms: dict[str, dict[int, dict]], quantiles: int = 5) -> dict[int, int]:
    """Snell et al.'s oracle bins: quintiles of the share of arms solving each problem (1: the easiest fifth)."""
    seeds = sorted(next(iter(arms.values())))
    share = {s: sum(rows[s]["correct"] for rows in arms.values()) / len(arms) for s in seeds}
    order = sorted(seeds, key=lambda s: (-share[s], s))
    return {s: 1 + i * quantiles // len(order) for i, s in enumerate(order)}


def per_problem_oracle(arms: dict[str, dict[int, dict]]) -> tuple[float, float]:
    """Each problem through the cheapest arm that solves it (the cheapest arm of all when none does)."""
    seeds = sorted(next(iter(arms.values())))
    solved = tokens = 0
    for s in seeds:
        rows = [rows[s] for rows in arms.values()]
        right = [r["completion_tokens"] for r in rows if r["correct"]]
        solved += bool(right)
        tokens += min(right) if right else min(r["completion_tokens"] for r in rows)
    return solved / len(seeds), tokens / len(seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="ponder eval output folder holding every arm's rows")
    parser.add_argument("--token-ratio", type=float, default=0.25)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated run names (default: %(default)s)")
    parser.add_argument("--reference", default=REFERENCE, help="the run whose accuracy and tokens are the goal's")
    args = parser.parse_args()
    arms = read_arms(args.folder, tuple(args.arms.split(",")))
    ref = arms[args.reference]
    ref_acc = sum(r["correct"] for r in ref.values()) / len(ref)
    ref_tokens = sum(r["completion_tokens"] for r in ref.values()) / len(ref)
    cap = args.token_ratio * ref_tokens
    print(f"reference {args.reference}: {ref_acc:.1%} at {ref_tokens:.0f} tokens; cap {cap:.0f} tokens")
    print("| router knows | objective | accuracy | mean tokens | tokens / reference's | arm per bin (easiest first) |")
    print("|---|---|---|---|---|---|")
    binnings = {
        "reasoning-gym's level": {s: r["level"] for s, r in ref.items()},
        "oracle difficulty (quintiles of the arms' solve share)": oracle_difficulty(arms),
    }
    for label, bins in binnings.items():
        every = assignments(arms, bins)
        within = max((a for a in every if a[1] <= cap), key=lambda a: (a[0], -a[1]))
        matching = min((a for a in every if a[0] >= ref_acc), key=lambda a: a[1], default=None)
        for objective, (acc, tokens, choice) in (
            ("best within the cap", within),
            ("fewest tokens at its accuracy", matching),
        ):
            arms_text = ", ".join(c.replace("-prm", "").replace(".max_samples=", "-") for c in choice)
            print(f"| {label} | {objective} | {acc:.1%} | {tokens:.0f} | {tokens / ref_tokens:.1%} | {arms_text} |")
    acc, tokens = per_problem_oracle(arms)
    print(f"| each problem's outcome | cheapest solver | {acc:.1%} | {tokens:.0f} | {tokens / ref_tokens:.1%} | |")


if __name__ == "__main__":
    main()
