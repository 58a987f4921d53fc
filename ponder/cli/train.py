"""``ponder train``: one subcommand per trainer (``sft``, ``rm``, ``prm``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ponder.training.config_args import add_dataclass_arguments, dataclass_from_args
from ponder.training.prm_config import PRMArgs
from ponder.training.rm_config import RMArgs
from ponder.training.sft_config import SFTArgs

TRAINERS = "{sft,rm,prm}"


def _run_sft(args: argparse.Namespace) -> int:
    from ponder.training.common import TrainingInputError
    from ponder.training.sft import train_sft

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


def _run(name: str, cls: type, train: str) -> Any:
    """The handler of ``ponder train NAME``: build the config, train, print the output folder."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        from ponder.training.common import TrainingInputError

        module, func = train.rsplit(".", 1)
        try:
            out = getattr(importlib.import_module(module), func)(dataclass_from_args(cls, args))
        except TrainingInputError as exc:
            print(f"ponder train {name}: error: {exc}", file=sys.stderr)
            return 2
        print(out)
        return 0

    return run


def add_rm_parser(train_sub: argparse._SubParsersAction) -> None:
    """``ponder train rm``: flags generated from ``RMArgs``."""
    p = train_sub.add_parser(
        "rm",
        help="Outcome reward model (--loss bt: Bradley-Terry via TRL; pl: Plackett-Luce) on policy samples.",
        description=RMArgs.__doc__,
    )
    add_dataclass_arguments(p, RMArgs)
    p.set_defaults(func=_run("rm", RMArgs, "ponder.training.rm.train_rm"))


def add_prm_parser(train_sub: argparse._SubParsersAction) -> None:
    """``ponder train prm``: flags generated from ``PRMArgs``."""
    p = train_sub.add_parser(
        "prm",
        help="Process reward model (--labels exact | mc-hard | mc-soft) on policy samples.",
        description=PRMArgs.__doc__,
    )
    add_dataclass_arguments(p, PRMArgs)
    p.set_defaults(func=_run("prm", PRMArgs, "ponder.training.prm.train_prm"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ponder train`` and its trainers on the top-level ``ponder`` subparsers."""
    p = sub.add_parser("train", help="Train the policies and verifiers Ponder serves.", description=__doc__)
    train_sub = p.add_subparsers(dest="trainer", required=True, metavar=TRAINERS)
    add_sft_parser(train_sub)
    add_rm_parser(train_sub)
    add_prm_parser(train_sub)


def main(argv: list[str] | None = None) -> int:
    """``python -m ponder.cli.train sft ...``: the same as ``ponder train sft ...``."""
    parser = argparse.ArgumentParser(prog="ponder train", description=__doc__)
    add_train_parser_sub = parser.add_subparsers(dest="trainer", required=True, metavar=TRAINERS)
    add_sft_parser(add_train_parser_sub)
    add_rm_parser(add_train_parser_sub)
    add_prm_parser(add_train_parser_sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
