"""``PRMArgs``: every option of ``ponder train prm``, one field each, whose help text is the CLI flag's help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.training.config_args import arg
from ponder.training.rm_config import VerifierArgs
from ponder.training.step_datasets import FORMATS, MATH_SHEPHERD_TAG


@dataclass
class PRMArgs(VerifierArgs):
    """Train a process reward model: one logit per token, read at the end of every step (sigmoid = P(still right)).

    Step labels of the policy samples: ``exact`` (checked against the gold trace), or Math-Shepherd Monte Carlo
    estimates, ``mc-hard`` (some rollout from after the step ends correct) or ``mc-soft`` (the fraction that does).
    """

    dataset: str | None = field(
        default=None,
        metadata=arg(
            "Your own data instead of policy samples: JSONL, JSON or Parquet, in one of the --dataset-format "
            "formats: `prompt` (a user message, or a list of {role, content} turns), `steps` (a list of step texts "
            "without the separator) and `labels` (one per step: true/false, or a probability in [0, 1]), or TRL's "
            "`prompt`, `completions`, `labels`; Math-Shepherd's `input` (question, then steps each ending in "
            "--step-tag) and `label` (the same with + or - for each tag); PRM800K's JSONL rows (`question.problem`, "
            "`label.steps` of rated completions).",
            metavar="FILE",
        ),
    )
    dataset_format: str = field(
        default="auto",
        metadata=arg(
            "Format of --dataset: auto (told by its columns), steps (Ponder's or TRL's stepwise rows), "
            "math-shepherd or prm800k.",
            choices=FORMATS,
        ),
    )
    step_tag: str = field(
        default=MATH_SHEPHERD_TAG,
        metadata=arg("--dataset-format math-shepherd: the tag that ends every step in `input`."),
    )
    neutral_label: float = field(
        default=1.0,
        metadata=arg(
            "--dataset-format prm800k: the target of a step rated 0 (neutral: not wrong, no progress); +1 is 1, -1 "
            "is 0."
        ),
    )
    labels: str = field(
        default="exact",
        metadata=arg(
            "Step labels of the policy samples: exact, mc-hard or mc-soft.", choices=("exact", "mc-hard", "mc-soft")
        ),
    )
    mc_rollouts: int = field(
        default=8, metadata=arg("mc-hard / mc-soft: rollouts per step prefix (one engine call with n=this).")
    )
    hard_negatives: int = field(
        default=0,
        metadata=arg(
            "Add, for every training problem, its gold trace and this many corrupted copies: one step gets a wrong "
            "result (off by 1 or 10, swapped/dropped/doubled digit), a wrong operand (another number of the question) "
            "or a skipped term, and every later step is carried forward from it; labelled exactly. 0 = none.",
            metavar="K",
        ),
    )
    balance_depth: bool = field(
        default=False,
        metadata=arg(
            "Weight the step losses so that good and bad steps weigh the same at every step position, "
            "so that depth alone stops predicting the label."
        ),
    )
