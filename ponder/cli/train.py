"""``ponder train``: one subcommand per trainer (``sft``, ``rm``, ``prm``), its flags those of the trainer's config."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ponder.training.config_args import ConfigParser
from ponder.training.prm_config import PRMArgs
from ponder.training.rm_config import RMArgs
from ponder.training.sft_config import SFTArgs

# name: (config dataclass, the trainer that takes it, the subcommand's one-line help)
TRAINERS: dict[str, tuple[type, str, str]] = {
    "sft": (
        SFTArgs,
        "ponder.training.sft.train_sft",
        "Supervised fine-tuning of a policy (default: the bundled arithmetic thinker, from scratch).",
    ),
    "rm": (
        RMArgs,
        "ponder.training.rm.train_rm",
        "Outcome reward model (--loss bt: Bradley-Terry via TRL; pl: Plackett-Luce) on policy samples.",
    ),
    "prm": (
        PRMArgs,
        "ponder.training.prm.train_prm",
        "Process reward model (--labels exact | mc-hard | mc-soft) on policy samples.",
    ),
}


def _handler(name: str, parser: ConfigParser, train: str) -> Any:
    """The handler of ``ponder train NAME``: the config from the parsed flags, train, print the output folder."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        from ponder.training.common import TrainingInputError

        (cfg,) = parser.parse_dict(vars(args), allow_extra_keys=True)  # the other keys are the CLI's own
        module, func = train.rsplit(".", 1)
        try:
            out = getattr(importlib.import_module(module), func)(cfg)
        except TrainingInputError as exc:
            print(f"ponder train {name}: error: {exc}", file=sys.stderr)
            return 2
        print(out)
        return 0

    return run


def add_trainers(parser: argparse.ArgumentParser) -> None:
    """The ``sft``, ``rm`` and ``prm`` subcommands under ``parser``, each a ``ConfigParser`` of its config."""
    trainers = parser.add_subparsers(
        dest="trainer", required=True, metavar="{" + ",".join(TRAINERS) + "}", parser_class=ConfigParser
    )
    for name, (config, train, help) in TRAINERS.items():
        sub = trainers.add_parser(name, help=help, description=config.__doc__, dataclass_types=config)
        sub.set_defaults(func=_handler(name, sub, train))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ponder train`` and its trainers on the top-level ``ponder`` subparsers."""
    add_trainers(sub.add_parser("train", help="Train the policies and verifiers Ponder serves.", description=__doc__))


def main(argv: list[str] | None = None) -> int:
    """``python -m ponder.cli.train sft ...``: the same as ``ponder train sft ...``."""
    parser = argparse.ArgumentParser(prog="ponder train", description=__doc__)
    add_trainers(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
