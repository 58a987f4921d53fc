"""The ``ponder`` command: one subcommand per module of this package, as vLLM's ``entrypoints/cli``."""

from __future__ import annotations

import argparse
import logging
import sys

from ponder.cli import bench, eval, serve, strategies, train

SUBCOMMANDS = (serve, strategies, bench, eval, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ponder", description="Test-time-scaling inference server.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
