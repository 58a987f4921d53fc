"""``ponder bench``: benchmarks run side by side in one process (``overhead``, ``strategies``)."""

from __future__ import annotations

import argparse


def _overhead(args: argparse.Namespace) -> int:
    from ponder.bench.overhead import overhead

    return overhead(args)


def _strategies(args: argparse.Namespace) -> int:
    from ponder.bench.strategies import strategies

    return strategies(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="Benchmarks, side by side in one run.")
    kinds = p.add_subparsers(dest="bench", required=True)
    o = kinds.add_parser("overhead", help="Latency through Ponder (strategy none) vs. straight to the engine.")
    o.add_argument("--model", default=None, help="In-process mode: model folder (default: bundled or tiny).")
    o.add_argument("--upstream", default=None, help="Upstream mode: base URL of an OpenAI-compatible server.")
    o.add_argument("--requests", type=int, default=64)
    o.add_argument("--warmup", type=int, default=8)
    o.add_argument("--max-tokens", type=int, default=32)
    o.add_argument("--max-model-len", type=int, default=1024)
    o.add_argument("--dtype", default="auto")
    o.add_argument("--scratch", default="/tmp/ponder-bench")
    o.add_argument("--out", default=None, help="Append the markdown report to this file.")
    o.set_defaults(func=_overhead)
    _add_strategies_parser(kinds)


def _add_strategies_parser(kinds: argparse._SubParsersAction) -> None:
    s = kinds.add_parser("strategies", help="best_of_n / beam_search against one sample; vLLM prefix-cache hits.")
    s.add_argument("--model", default=None, help="Model folder (default: the bundled policy).")
    s.add_argument("--requests", type=int, default=24, help="Problems timed per arm (default: %(default)s).")
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument(
        "--cache-requests", type=int, default=8, help="Unseen problems per arm for the prefix-cache hit rate."
    )
    s.add_argument("--samples", type=int, default=16, help="N of best_of_n and beam_search (default: 16).")
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--max-tokens", type=int, default=160)
    s.add_argument("--max-model-len", type=int, default=512)
    s.add_argument("--block-size", type=int, default=32)
    s.add_argument("--dtype", default="float32")
    s.add_argument("--out", default=None, help="Append the markdown report to this file.")
    s.set_defaults(func=_strategies)
