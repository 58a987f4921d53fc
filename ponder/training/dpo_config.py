"""``DPOArgs``, ``SimPOArgs``, ``ORPOArgs``: the options of the offline preference trainers, one field per flag."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg
from ponder.training.policy_config import PolicyArgs


@dataclass
class PairsInput:
    """The preference pairs every offline preference trainer learns from."""

    dataset: str = field(
        metadata=arg(
            "Preference pairs (JSONL, JSON or Parquet), e.g. from `ponder train prefs`: `prompt` (a user message or a "
            "list of {role, content} turns), `chosen` and `rejected` (assistant texts, or one-turn lists).",
            metavar="FILE",
        )
    )


@dataclass
class PreferenceArgs(PolicyArgs, PairsInput):
    """The flags every offline preference trainer has."""

    max_length: int = field(default=256, metadata=arg("Truncate each prompt + answer to this many tokens."))


@dataclass
class DPOArgs(PreferenceArgs):
    """Direct Preference Optimization (TRL's DPOTrainer): raise the policy's log-ratio to the frozen reference on the
    chosen answer over the rejected one; the reference is the starting policy (with LoRA, the adapters switched off)."""

    beta: float = field(default=0.1, metadata=arg("How far the policy may move from the reference (DPO's beta)."))


@dataclass
class SimPOArgs(PreferenceArgs):
    """SimPO (TRL's CPOTrainer, loss_type=simpo, cpo_alpha=0): a reference-free preference loss on the length-normalised
    log-likelihood, with a target margin between the chosen and the rejected answer."""

    beta: float = field(default=2.0, metadata=arg("Scale of the length-normalised reward (SimPO's beta)."))
    simpo_gamma: float = field(default=0.5, metadata=arg("Target reward margin between chosen and rejected (gamma)."))


@dataclass
class ORPOArgs(PreferenceArgs):
    """ORPO (TRL's ORPOTrainer): supervised loss on the chosen answer plus an odds-ratio penalty on the rejected one;
    no reference model."""

    beta: float = field(default=0.1, metadata=arg("Weight of the odds-ratio term against the SFT loss (lambda)."))
