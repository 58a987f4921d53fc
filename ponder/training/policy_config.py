"""``PolicyArgs``: the flags every policy-optimisation trainer shares (the policy, its prompts, LoRA, optimisation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.core.sidecar import models_dir
from ponder.tasks.levels import ALL_LEVELS, TASKS
from ponder.training.config_args import OptimArgs, arg, shared
from ponder.training.lora import LoraArgs


def bundled(name: str) -> str:
    """The path of a bundled model folder (``policy``, ``orm``, ``prm``)."""
    return str(models_dir() / name)


@dataclass
class PolicyInputs:
    """Where the policy comes from and where the tuned one goes."""

    output_dir: str = field(
        kw_only=True,  # required, yet a config may list input flags with defaults before it (RLInputs)
        metadata=arg("Folder the tuned policy (a Hugging Face folder that `ponder serve` serves), its logs go to."),
    )
    policy: str = field(
        default_factory=lambda: bundled("policy"),
        metadata=arg("Policy folder to start from; also the frozen reference policy of the KL terms.", metavar="DIR"),
    )


@dataclass
class GeneratedPrompts:
    """Which arithmetic problems a trainer generates when it is given no prompts file."""

    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=arg("Generated prompts: difficulty levels, round-robin.", choices=ALL_LEVELS),
    )
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS), metadata=arg("Generated prompts: reasoning-gym tasks.", choices=TASKS)
    )


@dataclass
class PolicyArgs(OptimArgs, LoraArgs, PolicyInputs):
    """The flags of every policy trainer: its inputs, LoRA, optimisation (low learning rates: tuning, not training)."""

    epochs: float = shared("epochs", 1.0)
    batch_size: int = shared("batch_size", 8, "Examples per optimizer step (per device, before accumulation).")
    learning_rate: float = shared("learning_rate", 5e-6)
    warmup_ratio: float = shared("warmup_ratio", 0.0)
    weight_decay: float = shared("weight_decay", 0.0)
    logging_steps: int = shared("logging_steps", 10)
    seed: int = shared("seed", 0, "Seed of the data order and the sampling.")
    threads: int = shared("threads", 0)
    overwrite: bool = shared("overwrite", False)
