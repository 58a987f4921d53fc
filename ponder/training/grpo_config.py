"""``GRPOArgs``, ``CISPOArgs`` and the ``RLInputs`` they share with PPO: online RL of the policy on verifier rewards."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg
from ponder.training.policy_config import GeneratedPrompts, PolicyArgs


@dataclass
class RLInputs(GeneratedPrompts):
    """Prompts and rewards of the online trainers."""

    dataset: str | None = field(
        default=None,
        metadata=arg(
            "Prompts file (JSONL, JSON or Parquet): `prompt` (a string or chat turns), and `answer` for the scorer "
            "and math_rule rewards. Default: generated arithmetic problems (reasoning-gym scores them).",
            metavar="FILE",
        ),
    )
    train_size: int = field(default=1024, metadata=arg("Generated prompts: problems (train seed range)."))
    reward: list[str] = field(
        default_factory=lambda: ["scorer=1.0"],
        metadata=arg(
            "Reward terms KEY=WEIGHT, summed: scorer (reasoning-gym's score of the answer), calculator (the steps' "
            "arithmetic), math_rule, orm, prm (the bundled models), or a verifier model folder. "
            "E.g. --reward scorer=1.0 calculator=0.5",
            metavar="KEY=WEIGHT",
        ),
    )
    max_completion_length: int = field(default=160, metadata=arg("Longest sampled completion, in tokens."))
    temperature: float = field(default=1.0, metadata=arg("Sampling temperature of the rollouts."))


@dataclass
class GroupArgs(PolicyArgs, RLInputs):
    """What GRPO and CISPO share: groups of samples per prompt, advantages relative to the group."""

    num_generations: int = field(
        default=4, metadata=arg("Samples per prompt (the group its advantages are relative to).")
    )
    beta: float = field(
        default=0.0,
        metadata=arg("KL coefficient to the reference policy (0: no reference model is loaded, as TRL's default)."),
    )
    epsilon: float = field(default=0.2, metadata=arg("Lower clipping bound of the importance ratio (1 - epsilon)."))
    num_iterations: int = field(default=1, metadata=arg("Optimisation passes over each batch of rollouts (mu)."))
    use_vllm: bool = field(
        default=False,
        metadata=arg("Generate the rollouts with vLLM colocated with training (GPU); default: transformers."),
    )


@dataclass
class GRPOArgs(GroupArgs):
    """GRPO (TRL's GRPOTrainer): sample a group per prompt, score each sample with Ponder's verifiers, and push up
    the samples that beat their group's mean, with a clipped importance ratio."""

    loss_type: str = field(
        default="dapo",
        metadata=arg(
            "How the token losses are averaged: grpo (per sequence, then batch: favours short answers), dapo "
            "(per token over the batch, TRL's default), dr_grpo (by a constant), bnpo (per token, local batch).",
            choices=("grpo", "dapo", "dr_grpo", "bnpo"),
        ),
    )
    epsilon_high: float = field(
        default=0.28,
        metadata=arg("Upper clipping bound of the importance ratio (1 + epsilon_high; DAPO's clip-higher 0.28)."),
    )


@dataclass
class CISPOArgs(GroupArgs):
    """CISPO (TRL's GRPOTrainer, loss_type=cispo): clip the importance-sampling weight itself, stop its gradient, and
    keep every token's gradient, so that rare tokens that matter for reasoning are not clipped away."""

    epsilon_high: float = field(
        default=5.0,
        metadata=arg(
            "Cap of the importance-sampling weight (CISPO's epsilon_max; ScaleRL uses 5). Set explicitly: TRL's "
            "fallback is --epsilon (0.2), which would cap every weight far below 1."
        ),
    )
