"""``ponder train``: one subcommand per trainer (``sft`` now; ``rm`` and ``prm`` register here too)."""

from __future__ import annotations

import argparse
import sys

from training.config_args import add_dataclass_arguments, dataclass_from_args
from training.sft_config import SFTArgs


def _run_sft(args: argparse.Namespace) -> int:
    from training.common import TrainingInputError
    from training.sft import train_sft

    try:
        out = train_sft(dataclass_from_args(SFTArgs, args))
    except TrainingInputError as exc:
        print(f"ponder train sft: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def add_sft_parser(train_sub: argparse._SubParsersAction) -> None:
    """``ponder train sft``: flags generated from ``SFTArgs``."""
    p = train_sub.add_parser(
        "sft",
        help="Supervised fine-tuning of a policy (default: the bundled arithmetic thinker, from scratch).",
        description=SFTArgs.__doc__,
    )
    add_dataclass_arguments(p, SFTArgs)
    p.set_defaults(func=_run_sft)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ponder train`` and its trainers on the top-level ``ponder`` subparsers."""
    p = sub.add_parser("train", help="Train the policies and verifiers Ponder serves.", description=__doc__)
    train_sub = p.add_subparsers(dest="trainer", required=True, metavar="{sft}")
    add_sft_parser(train_sub)
    # Further trainers register here, one add_<name>_parser(train_sub) each:
    # `ponder train rm` (outcome reward model, --loss bt|pl) and `ponder train prm` (--labels exact|mc-hard|mc-soft).


def main(argv: list[str] | None = None) -> int:
    """``python -m training.cli sft ...``: the same as ``ponder train sft ...``."""
    parser = argparse.ArgumentParser(prog="ponder train", description=__doc__)
    add_train_parser_sub = parser.add_subparsers(dest="trainer", required=True, metavar="{sft}")
    add_sft_parser(add_train_parser_sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
