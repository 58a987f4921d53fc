"""Side by side: the bundled verifiers' forward passes on one torch thread (the default) against two, served.

Run from the repository root on an otherwise idle machine (verifiers.md, "Serving cost"):
    python docs/results/verifiers/threads_bench.py --requests 32

One in-process vLLM engine and Ponder's app, as ``ponder bench strategies`` builds them, with two more verifiers
loaded: ``prm2`` and ``orm2``, the same folders with ``threads=2``. Every problem goes through every arm in rotating
order, first one request at a time, then ``--concurrency`` requests at once (the engine then generates for the
others while a request's candidates are scored). Prints a markdown table of p50 wall times and their ratio to one
sample.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from ponder.bench.overhead import serve_in_process
from ponder.bench.strategies import build_app as strategies_app
from ponder.bench.strategies import problems


def build_app():
    """``ponder bench strategies``' app, plus ``prm2`` and ``orm2``: the bundled folders with ``threads=2``."""
    from ponder.core.sidecar import models_dir
    from ponder.verifiers.registry import load_verifier, parse_spec

    root = models_dir()
    args = argparse.Namespace(model=str(root / "policy"), max_model_len=512, dtype="float32", block_size=32)
    app, engine, verifiers = strategies_app(args)
    for spec in (f"prm2={root / 'prm'}:prm-generative,threads=2", f"orm2={root / 'orm'}:orm,threads=2"):
        verifiers.add(load_verifier(parse_spec(spec), engine=engine))  # the app looks verifiers up per request
    return app, engine, verifiers


ARMS = {
    "one sample": {},
    "best_of_n N=16, PRM, 1 thread": {"strategy": "best_of_n", "verifier": "prm"},
    "best_of_n N=16, PRM, 2 threads": {"strategy": "best_of_n", "verifier": "prm2"},
    "best_of_n N=16, ORM, 1 thread": {"strategy": "best_of_n", "verifier": "orm"},
    "best_of_n N=16, ORM, 2 threads": {"strategy": "best_of_n", "verifier": "orm2"},
}


async def measure(args: argparse.Namespace) -> dict[tuple[str, int], list[float]]:
    app, engine, verifiers = build_app()
    messages = problems(args.requests + 2)
    times: dict[tuple[str, int], list[float]] = {(a, c): [] for a in ARMS for c in (1, args.concurrency)}
    try:
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=600) as client:

            async def call(i: int, arm: str) -> float:
                body = {"model": "bench", "messages": messages[i], "seed": i, "max_tokens": 160, "temperature": 0.7}
                if ARMS[arm]:
                    body |= {**ARMS[arm], "budget": {"max_samples": 16}}
                start = time.perf_counter()
                resp = await client.post("/v1/chat/completions", json=body)
                resp.raise_for_status()
                return time.perf_counter() - start

            names = list(ARMS)
            for i in range(2):  # warm-up
                for arm in names:
                    await call(i, arm)
            for concurrency in (1, args.concurrency):
                for i in range(2, args.requests + 2):
                    shift = i % len(names)
                    for arm in names[shift:] + names[:shift]:
                        # the same problem ``concurrency`` times at once, seeds apart: one batch of requests
                        batch = await asyncio.gather(*(call(i, arm) for _ in range(concurrency)))
                        times[(arm, concurrency)].extend(batch)
    finally:
        await verifiers.aclose()
        await engine.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    times = asyncio.run(measure(args))
    header = f"| arm | p50 ms, one at a time | vs one sample | p50 ms, {args.concurrency} at once | vs one sample |"
    print(header + "\n|---|---|---|---|---|")
    base = {c: statistics.median(times[("one sample", c)]) for c in (1, args.concurrency)}
    for arm in ARMS:
        cells = []
        for c in (1, args.concurrency):
            p50 = statistics.median(times[(arm, c)])
            cells += [f"{1000 * p50:.0f}", f"{p50 / base[c]:.2f}x"]
        print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
