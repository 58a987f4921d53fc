"""Plot the training curves of the runs in training.md from their ``logs/train.jsonl``.

    python docs/results/training/plot_runs.py build/train/s3 docs/results/training/new_policy.png

One panel per run kind found under the folder: RFT's SFT loss, the GRPO / CISPO mean reward and KL, PPO's reward,
and the DPO / SimPO / ORPO loss.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = (
    ("RFT: SFT loss on kept + replayed answers", ("rft/rounds/1/model",), "loss"),
    ("GRPO / CISPO: mean reward (scorer)", ("grpo", "cispo"), "reward"),
    ("GRPO / CISPO: KL to the reference", ("grpo", "cispo"), "kl"),
    ("PPO: mean reward (scorer)", ("ppo",), "reward"),
    ("DPO / SimPO / ORPO: loss", ("dpo", "simpo", "orpo"), "loss"),
)


def rows(folder: Path) -> list[dict]:
    path = folder / "logs" / "train.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def main(root: str, out: str) -> None:
    base = Path(root)
    panels = [p for p in PANELS if any(rows(base / run) for run in p[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, runs, key) in zip(axes, panels, strict=True):
        for run in runs:
            points = [(r["step"], r[key]) for r in rows(base / run) if key in r and "step" in r]
            if points:
                ax.plot(*zip(*points, strict=True), label=run.split("/")[0])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
