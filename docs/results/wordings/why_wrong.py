"""Why best-of-n's wrong picks are wrong: a solution that stops early, one with a wrong step, or a wrong answer after
right steps, read against the gold steps of each problem.

Run from the repository root after the runs of wordings.md:
    python docs/results/wordings/why_wrong.py out/wordings-ab-held_out_instruction/bon-prm-old.jsonl ...
Prints, per file, how many picks were wrong and how many of them are of each kind.
"""

import json
import sys
from collections import Counter
from pathlib import Path

from ponder.tasks import generate_problems, gold_steps

problems = {p.seed: p for p in generate_problems("test", 200)}


def kind(row: dict) -> str:
    gold = gold_steps(problems[row["seed"]])
    steps = [s.strip() for s in (row.get("reasoning") or "").split("\n") if s.strip()]
    right = 0
    for written, expected in zip(steps, gold, strict=False):
        if written.replace(" ", "") != expected.replace(" ", ""):
            break
        right += 1
    if right == len(steps) < len(gold):
        return "stops early (every written step right)"
    if right == len(steps) == len(gold):
        return "wrong answer after right steps"
    return "a wrong step"


for path in sys.argv[1:]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    wrong = [r for r in rows if not r["correct"]]
    counts = Counter(kind(r) for r in wrong)
    print(f"{path}: {len(wrong)} wrong of {len(rows)}; " + "; ".join(f"{k}: {v}" for k, v in counts.most_common()))
