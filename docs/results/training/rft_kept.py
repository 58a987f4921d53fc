"""What RFT keeps from Ponder's search: how many kept answers have every step right, i.e. are the gold trace itself.

Run from the repository root (training.md, "Why the goals were not met"), on a `ponder train rft` output folder:
    python docs/results/training/rft_kept.py build/train/s6/rft
The bundled task has one way to write a right solution (running sums left to right; one partial product per digit,
then their sum), so a kept answer whose every step is right is character for character the gold trace that SFT
already trained on. Prints the kept chats (the search's answers and the replayed gold chats, which `ponder train rft`
logs apart) and how many have a wrong step.
"""

import json
import sys
from pathlib import Path

from ponder.core.reasoning import THINK_CLOSE, THINK_OPEN
from ponder.tasks.traces import check_step

folder = Path(sys.argv[1])
rows = [json.loads(line) for line in (folder / "rounds" / "1" / "kept.jsonl").read_text().splitlines() if line]
steps_right = 0
for row in rows:
    body = row["messages"][-1]["content"].split(THINK_CLOSE)[0].replace(THINK_OPEN, "")
    steps_right += all(check_step(step) for step in body.split("\n") if step)
print(f"kept chats (search answers and replayed gold traces): {len(rows)}")
print(f"with every step right: {steps_right}; with a wrong step: {len(rows) - steps_right}")
