"""The trainers' config fields: help and ``TrainingArguments`` metadata, the shared flags, and the way back to flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Field metadata naming the TrainingArguments fields a flag sets; `ConfigParser` keeps it from argparse.
TRAINER_KEY = "trainer"

# Every run is a CPU run in float32 that saves its folder itself and reports to no tracker.
CPU_RUN: dict[str, Any] = {
    "bf16": False,
    "use_cpu": True,
    "report_to": [],
    "save_strategy": "no",
    "eval_strategy": "no",
    "dataloader_num_workers": 0,
    "disable_tqdm": False,
    "torch_compile": False,
}


def arg(help: str, *, trainer: str | tuple[str, ...] = (), **argparse_kwargs: Any) -> dict[str, Any]:
    """Field metadata: the flag's help text, argparse extras (``choices``, ``metavar``) and the ``TrainingArguments``
    field(s) the flag's value is passed on to (``trainer``)."""
    names = (trainer,) if isinstance(trainer, str) else tuple(trainer)
    return {"help": help, **argparse_kwargs, **({TRAINER_KEY: names} if names else {})}


# The flags every trainer has, defined once: help text and the TrainingArguments fields each one sets. Each trainer
# words its own help for the batch size and the seed (what a batch holds and what the seed seeds differ).
SHARED_FLAGS: dict[str, dict[str, Any]] = {
    "epochs": arg("Passes over the training data.", trainer="num_train_epochs"),
    "max_steps": arg(
        "Stop after this many optimizer steps (-1: run the epochs); a few make a smoke test.", trainer="max_steps"
    ),
    "batch_size": arg("", trainer=("per_device_train_batch_size", "per_device_eval_batch_size")),
    "grad_accum": arg("Gradient accumulation steps.", trainer="gradient_accumulation_steps"),
    "learning_rate": arg("Peak learning rate (AdamW).", trainer="learning_rate"),
    "lr_scheduler": arg(
        "Learning-rate schedule.",
        choices=("cosine", "linear", "constant", "constant_with_warmup"),
        trainer="lr_scheduler_type",
    ),
    "warmup_ratio": arg("Fraction of the steps spent warming the learning rate up.", trainer="warmup_steps"),
    "weight_decay": arg("AdamW weight decay.", trainer="weight_decay"),
    "logging_steps": arg("Log the loss every this many steps.", trainer="logging_steps"),
    "seed": arg("", trainer=("seed", "data_seed")),
    "threads": arg("torch CPU threads (0: torch's default)."),
    "overwrite": arg("Replace the contents of a non-empty output folder."),
}


def shared(name: str, default: Any, help: str = "") -> Any:
    """The field of the shared flag ``name`` with this trainer's default (and help, where it is the trainer's own)."""
    return field(default=default, metadata={**SHARED_FLAGS[name], **({"help": help} if help else {})})


@dataclass
class OptimArgs:
    """The optimiser flags every trainer has, with the verifiers' defaults.

    A config lists them after its own input flags by naming this base first, ``class SFTArgs(OptimArgs, SFTInputs)``
    (a dataclass takes its bases' fields last base first), and restates only the defaults it changes.
    """

    epochs: float = shared("epochs", 2.0)
    max_steps: int = shared("max_steps", -1)
    batch_size: int = shared("batch_size", 16, "Training examples per optimizer step (see the trainer's help).")
    grad_accum: int = shared("grad_accum", 1)
    learning_rate: float = shared("learning_rate", 2e-4)
    lr_scheduler: str = shared("lr_scheduler", "cosine")
    warmup_ratio: float = shared("warmup_ratio", 0.05)
    weight_decay: float = shared("weight_decay", 0.01)


def trainer_values(cfg: Any) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords that ``cfg``'s fields name in their ``trainer`` metadata."""
    return {name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) for name in f.metadata.get(TRAINER_KEY, ())}


def training_arguments(cfg: Any, out: Path, config_class: Any = None, **extra: Any) -> Any:
    """``TrainingArguments`` (or a TRL subclass: ``SFTConfig``, ``RewardConfig``) for a CPU run of ``cfg`` into
    ``out``; ``extra`` sets what the flags do not (and may override the CPU run: QLoRA runs on the GPU)."""
    if config_class is None:
        from transformers import TrainingArguments as config_class
    return config_class(output_dir=str(out / "checkpoints"), **{**CPU_RUN, **trainer_values(cfg), **extra})


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
