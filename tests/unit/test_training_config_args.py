"""Config dataclasses as CLI flags (``ConfigParser``), as ``TrainingArguments``, and the way back to flags; the CLI
imports transformers only when ``ponder train`` runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ponder.training.config_args import arg, to_cli_flags, trainer_values, training_arguments
from ponder.training.config_parser import ConfigParser
from ponder.training.prm_config import PRMArgs
from ponder.training.rm_config import RMArgs
from ponder.training.sft_config import SFTArgs

CONFIGS = (SFTArgs, RMArgs, PRMArgs)


@dataclass
class Demo:
    out: str = field(metadata=arg("Where to."))
    steps: int = field(default=3, metadata=arg("How many (95% of them).", trainer="max_steps"))
    rate: float = 0.5
    name: str | None = None
    flag: bool = False
    levels: list[int] = field(default_factory=lambda: [1, 2], metadata={"choices": (1, 2, 3)})


def _parse(argv: list[str]) -> Demo:
    (demo,) = ConfigParser(Demo).parse_args_into_dataclasses(argv)
    return demo


def test_flags_parse_into_the_dataclass():
    assert _parse(["--out", "x"]) == Demo(out="x")
    got = _parse(["--out", "x", "--steps", "7", "--rate", "1e-3", "--name", "n", "--flag", "--levels", "3", "3"])
    assert got == Demo(out="x", steps=7, rate=1e-3, name="n", flag=True, levels=[3, 3])
    assert _parse(["--out", "x", "--flag", "--no-flag"]) == Demo(out="x", flag=False)


def test_required_fields_and_choices_are_enforced():
    with pytest.raises(SystemExit):
        _parse([])
    with pytest.raises(SystemExit):
        _parse(["--out", "x", "--levels", "4"])


def test_help_comes_from_field_metadata(capsys):
    ConfigParser(Demo).print_help()
    text = capsys.readouterr().out
    assert "Where to." in text and "How many (95% of them). (default: 3)" in text and "--no-flag" in text
    assert "Where to. (default" not in text  # a required flag has no default to show
    assert "trainer" not in text


def test_every_trainer_prints_its_help(capsys):
    from ponder.cli.main import main as ponder
    from ponder.cli.train import TRAINERS

    for name in TRAINERS:
        with pytest.raises(SystemExit) as exit:
            ponder(["train", name, "--help"])
        assert exit.value.code == 0 and "--output" in capsys.readouterr().out, name


def test_to_cli_flags_round_trips_and_omits_defaults():
    demo = Demo(out="x", steps=9, flag=True, levels=[2, 3])
    flags = to_cli_flags(demo)
    assert flags == ["--out", "x", "--steps", "9", "--flag", "--levels", "2", "3"]
    assert _parse(flags) == demo
    assert to_cli_flags(Demo(out="x"), skip=("out",)) == []


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_field_has_help_and_round_trips(config):
    parser = ConfigParser(config)
    for action in parser._actions[1:]:
        assert action.help and not action.help.startswith(" ("), action.dest
    (cfg,) = parser.parse_args_into_dataclasses(["--output-dir", "o", "--seed", "5", "--overwrite"])
    assert cfg == config(output_dir="o", seed=5, overwrite=True)
    (again,) = parser.parse_args_into_dataclasses(to_cli_flags(cfg))
    assert again == cfg


@pytest.mark.parametrize("config", CONFIGS)
def test_the_flags_that_set_training_arguments_name_real_fields(config):
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    values = trainer_values(config(output_dir="o"))
    assert set(values) <= known
    assert {"num_train_epochs", "per_device_train_batch_size", "learning_rate", "seed", "data_seed"} <= set(values)


def test_training_arguments_carry_the_flags(tmp_path: Path):
    cfg = RMArgs(output_dir="o", epochs=3.0, batch_size=4, grad_accum=2, lr_scheduler="linear", seed=7)
    args = training_arguments(cfg, tmp_path, remove_unused_columns=False)
    assert args.output_dir == str(tmp_path / "checkpoints") and args.use_cpu and not args.remove_unused_columns
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (3.0, 4, 4)
    assert (args.gradient_accumulation_steps, args.lr_scheduler_type.value, args.seed, args.data_seed) == (
        2,
        "linear",
        7,
        7,
    )
    assert trainer_values(Demo(out="x", steps=4)) == {"max_steps": 4}


def test_registering_ponder_train_imports_no_transformers():
    import subprocess
    import sys

    code = (
        "import argparse, sys; from ponder.cli import train; "
        "train.add_parser(argparse.ArgumentParser().add_subparsers()); print('transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
