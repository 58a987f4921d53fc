"""``PPOArgs``: every option of ``ponder train ppo`` (PPO with a value head, GAE and a KL penalty)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg, shared
from ponder.training.grpo_config import RLInputs
from ponder.training.policy_config import PolicyArgs


@dataclass
class PPOArgs(PolicyArgs, RLInputs):
    """PPO, the classic third step of RLHF: sample completions, score them with Ponder's verifiers, take a KL penalty
    to the frozen reference policy per token, estimate advantages with GAE(lambda) on a value head, and update the
    policy with the clipped surrogate and the value head with a clipped value loss."""

    batch_size: int = shared("batch_size", 8, "Prompts per rollout (one sample each); one PPO step per rollout.")
    max_steps: int = shared("max_steps", -1)
    ppo_epochs: int = field(default=2, metadata=arg("Optimisation passes over each rollout."))
    mini_batches: int = field(default=2, metadata=arg("Mini-batches each pass splits the rollout into."))
    gamma: float = field(default=1.0, metadata=arg("Discount per token (GAE's gamma)."))
    lam: float = field(default=0.95, metadata=arg("GAE's lambda: 0 = one-step TD, 1 = Monte Carlo returns."))
    clip_range: float = field(default=0.2, metadata=arg("Policy ratio clip (epsilon)."))
    clip_range_value: float = field(default=0.2, metadata=arg("Value clip around the rollout's values."))
    vf_coef: float = field(default=0.1, metadata=arg("Weight of the value loss."))
    kl_coef: float = field(default=0.05, metadata=arg("KL penalty per token to the reference policy (beta)."))
    whiten_advantages: bool = field(default=True, metadata=arg("Normalise each rollout's advantages."))
    max_grad_norm: float = field(default=1.0, metadata=arg("Gradient clipping."))
    logging_steps: int = shared("logging_steps", 1)
