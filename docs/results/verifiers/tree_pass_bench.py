"""Side-by-side timing of the PRM's tree pass and cache of questions, on the calls of best_of_n and a step search.

Run from the repository root:
    mkdir -p /tmp/old && git show d9eb0ef:ponder/verifiers/generative_prm.py > /tmp/old/old_genprm.py
    git show d9eb0ef:ponder/verifiers/hf.py > /tmp/old/old_hf.py
    sed -i 's/from ponder.verifiers.hf import/from old_hf import/' /tmp/old/old_genprm.py
    python docs/results/verifiers/tree_pass_bench.py build/samples/validation-200x16.jsonl /tmp/old
(the samples file is the cache `make models` writes through `ponder.training.genprm_card --cache`).

A request is one problem's 16 samples. ``best_of_n`` scores them once; a step search (``beam_search``) scores the
same question's partial solutions step after step: here every sample cut after its first step, then its first
two, and so on, one call per step (the calls a beam of 16 with no pruning would make).
"""

import collections
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from ponder.verifiers.generative_prm import GenerativePRM

ROUNDS = 2


def main(samples_path: str, old_dir: str) -> None:
    sys.path.insert(0, old_dir)
    old_mod = importlib.import_module("old_genprm")
    torch.set_num_threads(1)
    lines = Path(samples_path).read_text().splitlines()
    by_problem = collections.defaultdict(list)
    for r in (json.loads(line) for line in lines[1:]):  # the first line is the cache's header
        by_problem[r["seed"]].append(r)
    sets = [[(g[0]["messages"], r["steps"]) for r in g] for g in by_problem.values()]
    before = old_mod.GenerativePRM("ponder/models/prm", device="cpu")
    arms = {
        "before: the shared start, then padded rows (d9eb0ef)": before,
        "one pass over the prefix tree, questions kept (now)": GenerativePRM("ponder/models/prm", device="cpu"),
        "one pass over the prefix tree, none kept (question_cache_bytes=0)": GenerativePRM(
            "ponder/models/prm", device="cpu", question_cache_bytes=0
        ),
    }

    def patterns(items):
        depth = max(len(steps) for _, steps in items)
        stepwise = [[(p, steps[:k]) for p, steps in items if len(steps) >= k] for k in range(1, depth + 1)]
        return {"best_of_n (one call)": [items], "step search (a call per step)": stepwise}

    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    diff = 0.0
    names = list(arms)
    for _ in range(ROUNDS):
        for k, items in enumerate(sets):
            for name in names[k % 3 :] + names[: k % 3]:  # rotate the order so no arm always runs first
                prm = arms[name]
                for pattern, batches in patterns(items).items():
                    if hasattr(prm, "tree_reader"):  # each request starts cold: its question is not held
                        prm.tree_reader._entries.clear()
                        prm.tree_reader._held = 0
                    start = time.perf_counter()
                    for batch in batches:
                        prm.score_batch(batch)
                    total[name, pattern] += time.perf_counter() - start
                    calls[name, pattern] += len(batches)
            before, now = (arms[n].score_batch(items) for n in names[:2])
            pairs = zip(before, now, strict=True)
            diff = max([diff] + [abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True)])
    rounds = ROUNDS * len(sets)
    print("| scoring | best_of_n, ms per request | step search, ms per request | calls per step-search request |")
    print("|---|---|---|---|")
    for name in names:
        bon = total[name, "best_of_n (one call)"] / rounds * 1000
        steps = total[name, "step search (a call per step)"] / rounds * 1000
        print(f"| {name} | {bon:.1f} | {steps:.1f} | {calls[name, 'step search (a call per step)'] / rounds:.1f} |")
    print(f"\nlargest score difference, before against now: {diff:.1e}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
