"""``PRMArgs``: every option of ``ponder train prm``, one field each, whose help text is the CLI flag's help."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.rm_config import VerifierArgs, _h


@dataclass
class PRMArgs(VerifierArgs):
    """Train a process reward model: one logit per token, read at the end of every step (sigmoid = P(still right)).

    Step labels of the policy samples: ``exact`` (checked against the gold trace), or Math-Shepherd Monte Carlo
    estimates, ``mc-hard`` (some rollout from after the step ends correct) or ``mc-soft`` (the fraction that does).
    """

    dataset: str | None = field(
        default=None,
        metadata=_h(
            "Your own data instead of policy samples: JSONL, JSON or Parquet with columns `prompt` (a user message, "
            "or a list of {role, content} turns), `steps` (a list of step texts without the separator) and `labels` "
            "(one per step: true/false, or a probability in [0, 1]).",
            metavar="FILE",
        ),
    )
    labels: str = field(
        default="exact",
        metadata=_h(
            "Step labels of the policy samples: exact, mc-hard or mc-soft.", choices=("exact", "mc-hard", "mc-soft")
        ),
    )
    mc_rollouts: int = field(
        default=8, metadata=_h("mc-hard / mc-soft: rollouts per step prefix (one engine call with n=this).")
    )
