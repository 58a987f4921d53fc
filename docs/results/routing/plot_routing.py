"""The routing figures of docs/results/routing.md: per difficulty level, accuracy against mean generated tokens of the
best-of-n and DVTS series (the PRM) and of ``reasoning_effort: auto`` with each router, on the same test problems.

    .venv/bin/python docs/results/routing/plot_routing.py --baseline docs/results/strategies/summary.json \
        --auto "auto (router)=out/routing-test" --out docs/results/routing

Prints the markdown tables of the doc and writes accuracy_by_level.png.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

LEVELS = (1, 2, 3, 4, 5)
SERIES = {"best_of_n (PRM)": "bon-prm", "DVTS (PRM)": "dvts-prm"}
BUDGETS = (1, 4, 16, 64)
MARKERS = (("*", "crimson"), ("D", "purple"), ("s", "black"), ("v", "olive"))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def figures(run: dict) -> dict[int | str, tuple[float, float, int]]:
    """A ponder eval summary run, per level and over all ("all"): accuracy, mean completion tokens, problems."""
    groups = {**{int(k): v for k, v in run["by_level"].items()}, "all": run["overall"]}
    return {k: (v["accuracy"], v["mean_completion_tokens"], v["n"]) for k, v in groups.items()}


def runs_of(summary: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(summary.read_text())["runs"]}


def routed(rows: list[dict]) -> dict[int, dict[str, int]]:
    """Per problem level, how many problems went to each arm."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        counts[r["level"]][r.get("routed_to") or "?"] += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", type=Path, required=True, help="ponder eval summary.json with the bon-prm runs")
    p.add_argument("--auto", action="append", default=[], metavar="LABEL=DIR", help="auto's eval folder (repeatable)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    baseline = runs_of(args.baseline)
    series = {
        label: [(b, figures(baseline[f"{run}.max_samples={b}"])) for b in BUDGETS] for label, run in SERIES.items()
    }
    autos = {}
    for item in args.auto:
        label, folder = item.split("=", 1)
        rows = read(Path(folder) / "auto.jsonl") if (Path(folder) / "auto.jsonl").is_file() else []
        autos[label] = (figures(runs_of(Path(folder) / "summary.json")["auto"]), routed(rows))
    table(series, autos)
    plot(series, autos, args.out / "accuracy_by_level.png")


def table(series: dict, autos: dict) -> None:
    ref = dict(series["best_of_n (PRM)"])[64]
    print("| run | " + " | ".join(f"L{lv}" for lv in LEVELS) + " | all | tokens vs best-of-64 |")
    print("|---|" + "---|" * (len(LEVELS) + 2))
    rows = [(f"{label} {b}", f) for label, pts in series.items() for b, f in pts if b in (16, 64)]
    rows += [(label, f) for label, (f, _) in autos.items()]
    for name, f in rows:
        cells = [f"{100 * f[k][0]:.1f}% ({f[k][1]:.0f})" for k in (*LEVELS, "all")]
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * f['all'][1] / ref['all'][1]:.1f}% |")
    for label, (_, counts) in autos.items():
        print(f"\n{label}, problems per arm:")
        for level in LEVELS:
            print(f"- L{level}: " + ", ".join(f"{arm} {n}" for arm, n in sorted(counts[level].items())))


def plot(series: dict, autos: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    for ax, key in zip(axes.flat, (*LEVELS, "all"), strict=True):
        for label, pts in series.items():
            xs, ys = [f[key][1] for _, f in pts], [100 * f[key][0] for _, f in pts]
            ax.plot(xs, ys, marker="o", label=label)
            for (b, _), x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
        for (marker, color), (label, (f, _)) in zip(MARKERS, autos.items(), strict=False):
            ax.scatter([f[key][1]], [100 * f[key][0]], marker=marker, color=color, s=140, zorder=5, label=label)
        ref = dict(series["best_of_n (PRM)"])[64][key]
        ax.axvline(0.25 * ref[1], color="grey", linestyle=":", linewidth=1, label="25% of best-of-64's tokens")
        ax.axhline(100 * ref[0], color="grey", linestyle="--", linewidth=1, label="best-of-64's accuracy")
        ax.set_xscale("log")
        ax.set_title(f"level {key}" if key != "all" else "all 200 problems")
        ax.set_xlabel("mean generated tokens per problem")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("reasoning_effort auto (learned router) vs best-of-n and DVTS with the PRM, 200 held-out problems")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
