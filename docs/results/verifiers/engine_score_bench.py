"""The generative PRM scored inside a vLLM engine (prompt logprobs) against the transformers path, side by side.

Run from the repository root (verifiers.md, "Serving cost"):
    python docs/results/verifiers/engine_score_bench.py build/samples/validation-200x16.jsonl
(the samples file is the cache `make models` writes through `ponder.training.genprm_card --cache`).

Both arms compute the same step scores for 40 of the policy's 16-sample sets: the served ``GenerativePRM`` with
transformers in this process (one thread), and a second vLLM engine holding the PRM, asked for each distinct
candidate's prompt logprobs (``Engine.score``; its prefix cache holds the question). The order of the arms rotates.
"""

import asyncio
import collections
import json
import math
import sys
import time
from pathlib import Path

import torch

from ponder.core.types import Prompt
from ponder.engines.vllm_engine import VLLMEngine
from ponder.verifiers.generative_prm import GenerativePRM


async def engine_scores(engine: VLLMEngine, prm: GenerativePRM, items: list) -> list[list[float]]:
    """Step scores of ``items`` from the engine's logprobs of each distinct candidate's step tokens."""
    feats = prm.features_of(items)
    distinct = {tuple(ids): (ids, spans) for ids, spans in feats if spans}

    async def one(ids: list[int], spans: list[tuple[int, int]]) -> list[float]:
        start = spans[0][0]
        logprobs = await engine.score(Prompt(token_ids=ids[:start]), prm.tokenizer.decode(ids[start:]))
        return [math.exp(sum(logprobs[a - start : b - start])) for a, b in spans]

    scored = await asyncio.gather(*(one(ids, spans) for ids, spans in distinct.values()))
    by_ids = dict(zip(distinct, scored, strict=True))
    return [by_ids[tuple(ids)] if spans else [] for ids, spans in feats]


async def main(samples_path: str) -> None:
    torch.set_num_threads(1)
    lines = Path(samples_path).read_text().splitlines()
    by_problem = collections.defaultdict(list)
    for r in (json.loads(line) for line in lines[1:]):  # the first line is the cache's header
        by_problem[r["seed"]].append(r)
    sets = [[(g[0]["messages"], r["steps"]) for r in g] for g in list(by_problem.values())[::5]]  # 40 problems
    prm = GenerativePRM("ponder/models/prm", device="cpu")
    engine = await VLLMEngine.create(
        "ponder/models/prm", dtype="float32", max_model_len=512, gpu_memory_utilization=0.05, block_size=32
    )
    for items in sets[:2]:  # warm-up
        await engine_scores(engine, prm, items)

    async def in_engine(items: list) -> list[list[float]]:
        return await engine_scores(engine, prm, items)

    async def in_process(items: list) -> list[list[float]]:
        return prm.score_batch(items)

    arms = {"transformers, in process (served today)": in_process, "a second vLLM engine, prompt logprobs": in_engine}
    total: collections.Counter = collections.Counter()
    diff = 0.0
    for _ in range(3):
        for k, items in enumerate(sets):
            names = list(arms)
            results = {}
            for name in names[k % 2 :] + names[: k % 2]:
                t = time.perf_counter()
                results[name] = await arms[name](items)
                total[name] += time.perf_counter() - t
            a, b = results.values()
            diff = max([diff] + [abs(x - y) for r, s in zip(a, b, strict=True) for x, y in zip(r, s, strict=True)])
    base = total["transformers, in process (served today)"]
    for name in arms:
        print(f"| {name} | {total[name] / len(sets) / 3 * 1000:.1f} | {total[name] / base:.2f}x |")
    print("max abs step-score difference between the arms", diff)
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
