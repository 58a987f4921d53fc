"""``ponder bench overhead``: Ponder (strategy none) and the bare engine, side by side in one run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

TOPICS = ["12+7", "467+914", "3*41", "88-19+4", "250*3", "9+9+9", "71*12", "5-8+13"]


@dataclass
class Side:
    """Latencies (seconds) and generated tokens of one path."""

    name: str
    latencies: list[float]
    tokens: list[int]

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prompts(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"What is {TOPICS[i % len(TOPICS)]}? (#{i})"}] for i in range(count)]


async def interleaved(
    count: int, warmup: int, ours: Callable[[int], Awaitable[int]], theirs: Callable[[int], Awaitable[int]]
) -> tuple[Side, Side]:
    """Time both paths on the same prompts, alternating which goes first so drift hits both alike."""
    for i in range(warmup):
        await ours(i)
        await theirs(i)
    sides = (Side("ponder", [], []), Side("direct", [], []))
    for i in range(count):
        order = ((0, ours), (1, theirs)) if i % 2 == 0 else ((1, theirs), (0, ours))
        for k, call in order:
            start = time.perf_counter()
            tokens = await call(i)
            sides[k].latencies.append(time.perf_counter() - start)
            sides[k].tokens.append(tokens)
    return sides


@contextlib.asynccontextmanager
async def serve_in_process(app):
    """Ponder's app on a real uvicorn server in this event loop, on a free loopback port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def ponder_app(engine, served_name: str):
    from ponder.engines.settings import EngineSettings
    from ponder.server.app import attach, create_app
    from ponder.server.settings import ServerSettings

    settings = ServerSettings(engine=EngineSettings(served_model_names=(served_name,)))
    app = create_app(settings, engine=engine)
    attach(app, settings, engine, kind=type(engine).__name__)
    return app


def chat_caller(client: httpx.AsyncClient, path: str, model: str, messages: list[list[dict]], max_tokens: int):
    async def call(i: int) -> int:
        body = {"model": model, "messages": messages[i % len(messages)], "max_tokens": max_tokens, "temperature": 0}
        resp = await client.post(path, json=body)
        resp.raise_for_status()
        return resp.json()["usage"]["completion_tokens"]

    return call


async def bench_in_process(args: argparse.Namespace) -> tuple[Side, Side, dict]:
    """Ponder over HTTP vs. ``AsyncLLM.generate`` called directly, sharing one engine."""
    from vllm import SamplingParams as VLLMParams
    from vllm.sampling_params import RequestOutputKind

    from ponder.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine.from_args(args.model, max_model_len=args.max_model_len, dtype=args.dtype)
    messages = prompts(args.requests)
    llm, tokenizer = engine.async_llm, engine.tokenizer
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    params = VLLMParams(max_tokens=args.max_tokens, temperature=0, output_kind=RequestOutputKind.FINAL_ONLY)

    async def direct(i: int) -> int:
        final = None
        async for out in llm.generate(texts[i % len(texts)], params, request_id=f"bench-{i}-{time.monotonic_ns()}"):
            final = out
        return len(final.outputs[0].token_ids)

    try:
        async with serve_in_process(ponder_app(engine, "bench")) as url, httpx.AsyncClient(base_url=url) as client:
            ours = chat_caller(client, "/v1/chat/completions", "bench", messages, args.max_tokens)
            sides = await interleaved(args.requests, args.warmup, ours, direct)
    finally:
        await engine.aclose()
    return *sides, {"mode": "in-process (vLLM AsyncLLM)", "model": args.model}


async def bench_upstream(args: argparse.Namespace) -> tuple[Side, Side, dict]:
    """Ponder (``--engine openai``) in front of the upstream vs. the upstream called directly."""
    from ponder.engines.openai_engine import OpenAIEngine

    engine = await OpenAIEngine.connect(args.upstream)
    messages = prompts(args.requests)
    root = args.upstream.rstrip("/").removesuffix("/v1")
    try:
        async with (
            serve_in_process(ponder_app(engine, "bench")) as url,
            httpx.AsyncClient(base_url=url, timeout=120) as ponder_client,
            httpx.AsyncClient(base_url=root, timeout=120) as upstream_client,
        ):
            ours = chat_caller(ponder_client, "/v1/chat/completions", "bench", messages, args.max_tokens)
            theirs = chat_caller(upstream_client, "/v1/chat/completions", engine.model_id, messages, args.max_tokens)
            sides = await interleaved(args.requests, args.warmup, ours, theirs)
    finally:
        await engine.aclose()
    return *sides, {"mode": "upstream (--engine openai)", "model": engine.model_id, "upstream": args.upstream}


def report(ponder: Side, direct: Side, info: dict, args: argparse.Namespace) -> str:
    ratio = statistics.median(ponder.latencies) / statistics.median(direct.latencies)
    delta_ms = (statistics.median(ponder.latencies) - statistics.median(direct.latencies)) * 1000
    rows = [
        f"| {s.name} | {len(s.latencies)} | {statistics.mean(s.tokens):.1f} | {s.pct(0.5) * 1000:.1f} | "
        f"{s.pct(0.99) * 1000:.1f} |"
        for s in (ponder, direct)
    ]
    command = "ponder bench overhead " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "overhead"] else [])
    return "\n".join(
        [
            f"### {info['mode']}",
            "",
            f"- command: `{command.strip()}`",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
            f"{platform.processor() or 'cpu'}; model: `{info['model']}`",
            f"- {args.requests} sequential requests per side (after {args.warmup} warm-up each), alternating order, "
            f"greedy, max_tokens={args.max_tokens}",
            "",
            "| path | requests | mean tokens | p50 ms | p99 ms |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"**p50 ratio ponder/direct: {ratio:.3f}x; p50 difference: {delta_ms:+.2f} ms**",
            "",
        ]
    )


def overhead(args: argparse.Namespace) -> int:
    if args.upstream:
        ponder, direct, info = asyncio.run(bench_upstream(args))
    else:
        if not args.model:
            from ponder.core.sidecar import default_model
            from ponder.training.tiny_model import build_tiny_model

            args.model = default_model() or str(build_tiny_model(Path(args.scratch) / "bench-tiny"))
        ponder, direct, info = asyncio.run(bench_in_process(args))
    text = report(ponder, direct, info, args)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(text + "\n")
    return 0
