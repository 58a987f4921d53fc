"""Turn a config dataclass into argparse flags (help text from field metadata) and back."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag-name`` per field of ``cls``: type, default, ``help``/``choices``/``metavar`` from metadata.

    ``bool`` fields become ``--flag / --no-flag``; ``list[X]`` fields take one or more values; fields without a
    default are required.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, _optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
            kwargs["required"] = True
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            kwargs["type"] = typing.get_args(tp)[0]
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = tp
        if not kwargs.get("required"):
            kwargs["default"] = default
            if kwargs["help"] and "%(default)" not in kwargs["help"]:
                kwargs["help"] += " (default: %(default)s)"
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from the parsed flags that ``add_dataclass_arguments`` registered."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        if typing.get_origin(_unwrap_optional(hints[f.name])[0]) is tuple and value is not None:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def to_cli_flags(obj: Any, *, skip: tuple[str, ...] = (), defaults: bool = False) -> list[str]:
    """The flags that rebuild ``obj`` (a dataclass instance); fields left at their default only with ``defaults``."""
    flags: list[str] = []
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        same = value == default or (isinstance(value, tuple | list) and list(value) == list(default or []))
        if same and not defaults:
            continue
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, list | tuple):
            flags += [name, *map(str, value)]
        elif value is not None:
            flags += [name, str(value)]
    return flags
