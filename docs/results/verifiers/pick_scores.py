"""The bundled PRM's step scores of the picks where best-of-64 with the PRM and with the ORM disagree (seeded draws).

Run from the repository root (verifiers.md, "Not done yet"), on the folders of strategies.md's seeded reruns:
    python docs/results/verifiers/pick_scores.py out/strategies-seed1 out/strategies-seed1001
For every problem where one verifier's pick is graded right and the other's wrong, prints both picks' steps, each
with the probability the PRM gives it.
"""

import json
import sys
from pathlib import Path

import torch

from ponder.verifiers.generative_prm import GenerativePRM

torch.set_num_threads(1)
prm = GenerativePRM("ponder/models/prm", device="cpu", threads=1)
for folder in map(Path, sys.argv[1:]):
    by_prm, by_orm = (
        [json.loads(line) for line in (folder / f"bon-{v}.max_samples=64.jsonl").read_text().splitlines()]
        for v in ("prm", "orm")
    )
    for a, b in zip(by_prm, by_orm, strict=True):
        if a["correct"] == b["correct"]:
            continue
        print(f"{folder.name}: {a['question']} (answer {a['reference']})")
        for name, row in (("PRM's pick", a), ("ORM's pick", b)):
            steps = [s for s in row["reasoning"].split("\n") if s]
            scores = prm.score_batch([(row["question"], steps)])[0]
            marks = ", ".join(f"{s} {p:.3g}" for s, p in zip(steps, scores, strict=True))
            print(f"  {name}, graded {'right' if row['correct'] else 'wrong'}: {marks} -> {row['answer']}")
