"""Side-by-side timing of generative PRM scoring variants on the policy's own 16-sample sets (verifiers.md).

Run from the repository root, against the scoring code it measured (since then the served path reads a request in one
pass over its answers' prefix tree: tree_pass_bench.py):
    git checkout d9eb0ef -- ponder/verifiers
    git show ac2632f:ponder/verifiers/generative_prm.py > /tmp/old_genprm.py   # the code before the change
    python docs/results/verifiers/score_bench.py build/samples/validation-200x16.jsonl /tmp/old_genprm.py
    git checkout HEAD -- ponder/verifiers
(the samples file is the cache `make models` writes through `ponder.training.genprm_card --cache`).
"""

import collections
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from ponder.verifiers.generative_prm import GenerativePRM


def main(samples_path: str, old_path: str) -> None:
    spec = importlib.util.spec_from_file_location("old_genprm", old_path)
    old_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old_mod)
    torch.set_num_threads(1)
    lines = Path(samples_path).read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]  # the first line is the cache's header
    by_problem = collections.defaultdict(list)
    for r in rows:
        by_problem[r["seed"]].append(r)
    sets = [[(g[0]["messages"], r["steps"]) for r in g] for g in list(by_problem.values())[::5]]  # 40 problems
    new = GenerativePRM("ponder/models/prm", device="cpu")
    old = old_mod.GenerativePRM("ponder/models/prm", device="cpu")
    bf16 = GenerativePRM("ponder/models/prm", device="cpu")
    bf16.model = bf16.model.to(torch.bfloat16)

    def alone(items):  # every candidate its own padded row: no sharing at all
        feats = [new.features(*it) for it in items]
        out = [[] for _ in items]
        with torch.inference_mode():
            new._score_alone([i for i, f in enumerate(feats) if f[1]], feats, out)
        return out

    arms = {
        "one row per candidate": alone,
        "shared question (before)": old.score_batch,
        "dedupe + common prefix (now)": new.score_batch,
        "now, bf16 weights": bf16.score_batch,
    }
    total = collections.Counter()
    bf16_diff = 0.0
    for _ in range(3):
        for k, items in enumerate(sets):
            names = list(arms)
            for name in names[k % 4 :] + names[: k % 4]:  # rotate the order so no arm always runs first
                t = time.perf_counter()
                arms[name](items)
                total[name] += time.perf_counter() - t
            pairs = zip(alone(items), bf16.score_batch(items), strict=True)
            bf16_diff = max([bf16_diff] + [abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True)])
    base = total["one row per candidate"]
    for name in arms:
        print(f"| {name} | {total[name] / len(sets) / 3 * 1000:.1f} | {total[name] / base:.2f}x |")
    print("bf16 max abs score difference", bf16_diff)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
