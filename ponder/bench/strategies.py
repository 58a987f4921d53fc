"""``ponder bench strategies``: search strategies against one sample, side by side on one vLLM engine, plus the
prefix-cache hit rate each strategy gets from vLLM."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ponder.bench.overhead import serve_in_process


@dataclass(frozen=True)
class Arm:
    """One kind of request the benchmark times: a label and the body fields it adds."""

    label: str
    body: dict[str, Any]


@dataclass
class Timings:
    """What one arm measured over its requests."""

    arm: Arm
    latencies: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    cache: dict[str, float] = field(default_factory=lambda: {"queries": 0.0, "hits": 0.0})

    def p50(self) -> float:
        return statistics.median(self.latencies)

    def hit_rate(self) -> float:
        return self.cache["hits"] / self.cache["queries"] if self.cache["queries"] else 0.0


def arms(samples: int) -> list[Arm]:
    budget = {"budget": {"max_samples": samples}}
    # best_of_n scores all 16 in one call once they are done; these arms score each as it finishes, for the ratio
    bon_early = {"strategy": "best_of_n", "strategy_options": {"score_early": True}}
    adaptive = {"verifier": "prm", "strategy_options": {"stop_score": 0.5}}
    adaptive_dvts = {"strategy": "dvts", "verifier": "prm", "strategy_options": {"stop_score": 0.5, "wave_subtrees": 1}}
    return [
        Arm("one sample (strategy none)", {}),
        Arm(f"n={samples} samples, no selection (strategy none)", {"n": samples}),
        Arm(f"best_of_n N={samples}, ORM", {"strategy": "best_of_n", "verifier": "orm", **budget}),
        Arm(f"best_of_n N={samples}, ORM, scored as they finish", {**bon_early, "verifier": "orm", **budget}),
        Arm(f"best_of_n N={samples}, PRM", {"strategy": "best_of_n", "verifier": "prm", **budget}),
        Arm(f"best_of_n N={samples}, PRM, scored as they finish", {**bon_early, "verifier": "prm", **budget}),
        Arm(f"best_of_n N={samples}, calculator", {"strategy": "best_of_n", "verifier": "calculator", **budget}),
        Arm(f"beam_search N={samples}, PRM", {"strategy": "beam_search", "verifier": "prm", **budget}),
        # adaptive: they stop at the first chunk or wave holding a solution the PRM is sure of
        Arm(f"best_of_n N={samples}, PRM, adaptive", {**adaptive, "strategy": "best_of_n", **budget}),
        Arm(f"dvts N={samples}, PRM", {"strategy": "dvts", "verifier": "prm", **budget}),
        Arm(f"dvts N={samples}, PRM, adaptive, one subtree a wave", {**adaptive_dvts, **budget}),
    ]


def problems(count: int) -> list[list[dict]]:
    """Held-out test problems of every level, as the bundled policy is asked them."""
    from ponder.tasks import generate_problems

    return [p.prompt_messages() for p in generate_problems("test", count)]


def build_app(args: argparse.Namespace):
    """Ponder's app over one in-process vLLM engine, with the bundled verifiers loaded."""
    from ponder.core.sidecar import models_dir
    from ponder.engines.settings import EngineSettings
    from ponder.engines.vllm_engine import VLLMEngine
    from ponder.server.app import attach, create_app
    from ponder.server.settings import ServerSettings
    from ponder.verifiers.registry import default_verifiers

    engine = VLLMEngine.from_args(
        args.model, max_model_len=args.max_model_len, dtype=args.dtype, block_size=args.block_size
    )
    settings = ServerSettings(engine=EngineSettings(model=args.model, served_model_names=("bench",)))
    verifiers = default_verifiers(models_dir(), engine=engine)
    app = create_app(settings, engine=engine)
    attach(app, settings, engine, kind="vllm", verifiers=verifiers)
    return app, engine, verifiers


async def run(args: argparse.Namespace) -> list[Timings]:
    """Each problem through every arm in turn, rotating which arm goes first so drift hits all alike."""
    app, engine, verifiers = build_app(args)
    timed = args.requests + args.warmup
    # phase 2 gives every arm problems no request has seen, so its hits are its own reuse (and the shared template)
    messages = problems(timed + len(arms(args.samples)) * args.cache_requests)
    results = [Timings(a) for a in arms(args.samples)]
    base = {"model": "bench", "max_tokens": args.max_tokens, "temperature": args.temperature}
    try:
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=600) as client:

            async def call(i: int, arm: Arm) -> int:
                body = {**base, "messages": messages[i], "seed": i, **arm.body}
                resp = await client.post("/v1/chat/completions", json=body)
                resp.raise_for_status()
                return resp.json()["usage"]["completion_tokens"]

            for i in range(args.warmup):
                for t in results:
                    await call(i, t.arm)
            for i in range(args.warmup, args.warmup + args.requests):
                shift = i % len(results)
                for t in results[shift:] + results[:shift]:
                    start = time.perf_counter()
                    t.tokens.append(await call(i, t.arm))
                    t.latencies.append(time.perf_counter() - start)
            for k, t in enumerate(results):
                first = timed + k * args.cache_requests
                for i in range(first, first + args.cache_requests):
                    before = engine.prefix_cache_stats()
                    await call(i, t.arm)
                    await asyncio.sleep(0.2)  # vLLM reports scheduler stats with its outputs: let the last arrive
                    after = engine.prefix_cache_stats()
                    for key in ("queries", "hits"):
                        t.cache[key] += after[key] - before[key]
    finally:
        await verifiers.aclose()
        await engine.aclose()
    return results


def report(results: list[Timings], args: argparse.Namespace) -> str:
    one = results[0].p50()
    rows = [
        f"| {t.arm.label} | {len(t.latencies)} | {statistics.mean(t.tokens):.0f} | {t.p50() * 1000:.0f} | "
        f"{max(t.latencies) * 1000:.0f} | {t.p50() / one:.2f}x | {t.hit_rate():.1%} |"
        for t in results
    ]
    argv = sys.argv[1:]
    command = "ponder " + " ".join(argv) if argv[:2] == ["bench", "strategies"] else "ponder bench strategies"
    return "\n".join(
        [
            "### Strategies against one sample (vLLM in process)",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
            f"{platform.processor() or 'cpu'}; model: `{args.model}`; block size {args.block_size}",
            f"- {args.requests} held-out test problems (after {args.warmup} warm-up), each through every arm in "
            f"rotating order, one request at a time; temperature {args.temperature}, max_tokens {args.max_tokens}",
            "- wall time = the whole HTTP request (sampling, verifier scoring, selection)",
            f"- prefix-cache hits = prompt tokens vLLM found cached / prompt tokens it looked up, over "
            f"{args.cache_requests} further problems per arm that no other request had seen (hits come in whole "
            f"blocks of {args.block_size} tokens; the chat template's opening is shared by every problem)",
            "",
            "| arm | requests | mean completion tokens | p50 ms | max ms | p50 / one sample | prefix-cache hits |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def strategies(args: argparse.Namespace) -> int:
    from ponder.core.sidecar import default_model

    args.model = args.model or default_model()
    if not args.model:
        print("ponder bench strategies: no bundled model under ponder/models/policy; pass --model DIR", file=sys.stderr)
        return 2
    text = report(asyncio.run(run(args)), args)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(text + "\n")
    return 0
