"""``ponder strategies``: the decoding strategies and their ``strategy_options``, as markdown."""

from __future__ import annotations

import argparse


def _print_strategies(args: argparse.Namespace) -> int:
    from ponder.strategies.describe import reference_markdown, strategy_markdown

    print(strategy_markdown(args.name) if args.name else reference_markdown())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("strategies", help="List the decoding strategies and their strategy_options (markdown).")
    p.add_argument("name", nargs="?", help="One strategy (default: all).")
    p.set_defaults(func=_print_strategies)
