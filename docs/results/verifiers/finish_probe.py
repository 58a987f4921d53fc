"""Would the PRM pick better if it also scored the finish (the closing think tag and the final answer)? Validation only.

Run from the repository root (verifiers.md, "Not done yet"):
    python docs/results/verifiers/finish_probe.py build/samples/validation-200x16.jsonl
The served PRM scores the steps of the think block; a solution that stops a step early (``99*1=99``, ``99*10=990``,
then the answer 990) has only right steps. The PRM was trained on whole gold chats, so it also gives a probability to
``</think>`` and the answer where the solution stops. Prints best-of-16 accuracy (by level) and pairwise accuracy on
the 200 validation sets of 16 policy samples, ranking by the minimum step score, by the minimum with the finish, and by
their product.
"""

import collections
import json
import math
import sys
from pathlib import Path

import torch

from ponder.verifiers.base import split_completion
from ponder.verifiers.generative_prm import GenerativePRM

torch.set_num_threads(2)
lines = Path(sys.argv[1]).read_text().splitlines()
rows = [json.loads(line) for line in lines[1:]]  # the first line is the cache's header
prm = GenerativePRM("ponder/models/prm", device="cpu")
view = prm._view
by = collections.defaultdict(list)
for r in rows:
    by[r["seed"]].append(r)
results = []
with torch.inference_mode():
    for seed, group in by.items():
        msgs = group[0]["messages"]
        steps_scores = prm.score_batch([(msgs, r["steps"]) for r in group])
        prompt = prm._prompt(msgs)
        for r, ss in zip(group, steps_scores, strict=True):
            _, content, _ = split_completion(r["completion"])
            body = "".join(view(s) + "\n" for s in r["steps"])
            finish = prm.think_tags[1] + view(content.strip())
            text = prompt + body + finish
            enc = prm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            starts = [a for a, _ in enc["offset_mapping"]]
            lo = next(i for i, a in enumerate(starts) if a >= len(prompt) + len(body))
            lp = prm.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
            f = math.exp(sum(float(lp[t - 1, ids[t]]) for t in range(lo, len(ids))))
            results.append((seed, r["level"], r["correct"], min(ss) if ss else 0.0, f))


def best_of(key):
    acc = collections.Counter()
    n = collections.Counter()
    g = collections.defaultdict(list)
    for x in results:
        g[x[0]].append(x)
    for xs in g.values():
        best = max(xs, key=key)
        acc[xs[0][1]] += best[2]
        n[xs[0][1]] += 1
    return sum(acc.values()) / sum(n.values()), {level: round(acc[level] / n[level], 3) for level in sorted(n)}


def pairwise(key):
    g = collections.defaultdict(list)
    for x in results:
        g[x[0]].append(x)
    good = tot = 0
    for xs in g.values():
        for a in xs:
            for b in xs:
                if a[2] and not b[2]:
                    tot += 1
                    good += key(a) > key(b) or (key(a) == key(b)) * 0.5
    return good / tot


for name, key in [
    ("min over steps", lambda x: x[3]),
    ("min(steps, finish)", lambda x: min(x[3], x[4])),
    ("steps x finish", lambda x: x[3] * x[4]),
]:
    print(name, best_of(key), f"pairwise {pairwise(key):.4f}")
