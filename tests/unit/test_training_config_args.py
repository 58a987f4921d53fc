"""Config dataclasses as CLI flags: types, defaults, help text, required fields, and the way back to flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from ponder.training.config_args import add_dataclass_arguments, dataclass_from_args, to_cli_flags
from ponder.training.sft_config import SFTArgs


@dataclass
class Demo:
    out: str = field(metadata={"help": "Where to."})
    steps: int = field(default=3, metadata={"help": "How many."})
    rate: float = 0.5
    name: str | None = None
    flag: bool = False
    levels: list[int] = field(default_factory=lambda: [1, 2], metadata={"choices": (1, 2, 3)})


def _parse(argv: list[str]) -> Demo:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Demo)
    return dataclass_from_args(Demo, parser.parse_args(argv))


def test_flags_parse_into_the_dataclass():
    assert _parse(["--out", "x"]) == Demo(out="x")
    got = _parse(["--out", "x", "--steps", "7", "--rate", "1e-3", "--name", "n", "--flag", "--levels", "3", "3"])
    assert got == Demo(out="x", steps=7, rate=1e-3, name="n", flag=True, levels=[3, 3])


def test_required_fields_and_choices_are_enforced():
    with pytest.raises(SystemExit):
        _parse([])
    with pytest.raises(SystemExit):
        _parse(["--out", "x", "--levels", "4"])


def test_help_comes_from_field_metadata(capsys):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Demo)
    parser.print_help()
    text = capsys.readouterr().out
    assert "Where to." in text and "How many. (default: 3)" in text and "--no-flag" in text


def test_to_cli_flags_round_trips_and_omits_defaults():
    demo = Demo(out="x", steps=9, flag=True, levels=[2, 3])
    flags = to_cli_flags(demo)
    assert flags == ["--out", "x", "--steps", "9", "--flag", "--levels", "2", "3"]
    assert _parse(flags) == demo
    assert to_cli_flags(Demo(out="x"), skip=("out",)) == []


def test_every_sft_field_has_help():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, SFTArgs)
    for action in parser._actions[1:]:
        assert action.help and not action.help.startswith(" ("), action.dest
