"""``ConfigParser``: transformers' ``HfArgumentParser`` made to parse the trainers' configs into CLI flags."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
from typing import Any

from transformers import HfArgumentParser

from ponder.training.config_args import TRAINER_KEY


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, except on required flags, which have none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.required else super()._get_help_string(action)


class ConfigParser(HfArgumentParser):
    """``HfArgumentParser`` for the trainers' configs.

    Every ``bool`` flag also gets ``--no-FLAG`` (``HfArgumentParser`` adds it only to flags on by default; ours are
    off by default and scripts pass ``--no-group-by-length``), and the ``trainer`` metadata stays out of argparse.
    """

    def __init__(self, dataclass_types: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(dataclass_types, **kwargs)

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, config_field: dataclasses.Field) -> None:
        flag = copy.copy(config_field)  # HfArgumentParser narrows `X | None` to `X` on the field it gets
        metadata = {k: v for k, v in config_field.metadata.items() if k != TRAINER_KEY}
        if isinstance(metadata.get("help"), str):  # argparse %-formats help: "95%" would break --help
            metadata["help"] = metadata["help"].replace("%", "%%")
        flag.metadata = types.MappingProxyType(metadata)
        HfArgumentParser._parse_dataclass_field(parser, flag)
        if config_field.type is bool and config_field.default is False:
            name = config_field.name.replace("_", "-")
            parser.add_argument(
                f"--no-{name}",
                action="store_false",
                dest=config_field.name,
                default=argparse.SUPPRESS,
                help=f"Turn --{name} off.",
            )
