"""Served, is the verifier's forward pass running or waiting? Wall time against the scoring thread's CPU time.

Run from the repository root on an otherwise idle machine (verifiers.md, "Serving cost"):
    python docs/results/verifiers/served_probe.py --requests 32

Builds ``ponder bench strategies``' app (one in-process vLLM engine), wraps every verifier's batch function to time
it inside its worker thread (wall clock, the thread's CPU time, involuntary context switches, minor page faults),
and sends ``best_of_n`` N=16 requests one at a time, alternating the PRM and the ORM. A CPU time close to the wall
time means the pass computes the whole time: no wait on the GIL, on a core another process holds, or on memory.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time

import httpx

import ponder.verifiers.hf as hf
from ponder.bench.overhead import serve_in_process
from ponder.bench.strategies import build_app, problems

RECORDS: list[tuple[str, float, float, int, int]] = []
_plain_init = hf.MicroBatcher.__init__


def _timed_init(self, fn, **kwargs):
    def timed(items):
        wall, cpu = time.perf_counter(), time.thread_time()
        before = resource.getrusage(resource.RUSAGE_THREAD)
        out = fn(items)
        after = resource.getrusage(resource.RUSAGE_THREAD)
        RECORDS.append(
            (
                kwargs.get("name", "verifier"),
                (time.perf_counter() - wall) * 1e3,
                (time.thread_time() - cpu) * 1e3,
                after.ru_nivcsw - before.ru_nivcsw,
                after.ru_minflt - before.ru_minflt,
            )
        )
        return out

    _plain_init(self, timed, **kwargs)


async def main(args: argparse.Namespace) -> None:
    hf.MicroBatcher.__init__ = _timed_init
    from ponder.core.sidecar import models_dir

    ns = argparse.Namespace(model=str(models_dir() / "policy"), max_model_len=512, dtype="float32", block_size=32)
    app, _engine, _verifiers = build_app(ns)
    messages = problems(args.requests + 2)
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=600) as client:
        for i in range(args.requests + 2):
            for verifier in ("prm", "orm"):
                body = {
                    "model": "bench",
                    "messages": messages[i],
                    "seed": i,
                    "max_tokens": 160,
                    "temperature": 0.7,
                    "strategy": "best_of_n",
                    "verifier": verifier,
                    "budget": {"max_samples": 16},
                }
                (await client.post("/v1/chat/completions", json=body)).raise_for_status()
            if i == 1:
                RECORDS.clear()  # the first two problems warm up
    print("| verifier | calls | wall p50 ms | thread CPU p50 ms | involuntary switches p50 | minor faults p50 |")
    print("|---|---|---|---|---|---|")
    for name in sorted({r[0] for r in RECORDS}):
        rows = [r for r in RECORDS if r[0] == name]
        p50 = [statistics.median(r[k] for r in rows) for k in range(1, 5)]
        print(f"| {name} | {len(rows)} | {p50[0]:.1f} | {p50[1]:.1f} | {p50[2]:g} | {p50[3]:g} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
