"""``ponder bench``: side-by-side benchmarks (filled in below)."""

from __future__ import annotations

import argparse


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="Benchmarks, side by side in one run.")
    p.set_defaults(func=lambda _args: 0)
