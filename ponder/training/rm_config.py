"""``RMArgs`` (``ponder train rm``) and the ``VerifierArgs`` it shares with ``ponder train prm``, one field per flag."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.core.sidecar import models_dir
from ponder.tasks.levels import ALL_LEVELS


def _h(text: str, **extra: object) -> dict:
    return {"help": text, **extra}


@dataclass
class VerifierArgs:
    """Options shared by the verifier trainers: where the policy samples come from, optimisation, evaluation."""

    output_dir: str = field(
        metadata=_h("Folder the trained verifier (a Hugging Face folder), its sidecar and logs go to.")
    )
    dataset: str | None = field(
        default=None, metadata=_h("Your own training data (see the trainer's help).", metavar="FILE")
    )
    policy: str = field(
        default_factory=lambda: str(models_dir() / "policy"),
        metadata=_h("Policy whose sampled solutions are the training and evaluation data.", metavar="DIR"),
    )
    init_model: str | None = field(
        default=None,
        metadata=_h(
            "Causal LM folder the verifier starts from (its body is kept, a new head added); default: --policy.",
            metavar="DIR",
        ),
    )
    engine: str = field(
        default="vllm",
        metadata=_h("Engine that samples the policy (vllm is much faster on CPU).", choices=("vllm", "hf")),
    )
    samples: str = field(
        default="build/samples/train.jsonl",
        metadata=_h(
            "Policy samples of the training problems (JSONL): read when it holds samples of the requested problems, "
            "else generated and written there.",
            metavar="FILE",
        ),
    )
    eval_samples: str = field(
        default="build/samples/validation.jsonl",
        metadata=_h("The same for the held-out problems the verifier is measured on.", metavar="FILE"),
    )
    train_problems: int = field(default=800, metadata=_h("Training problems (train seed range, levels round-robin)."))
    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=_h("Difficulty levels of the training and held-out problems.", choices=ALL_LEVELS),
    )
    k: int = field(default=8, metadata=_h("Policy samples per training problem."))
    temperature: float = field(default=1.0, metadata=_h("Sampling temperature of the training samples."))
    eval_split: str = field(
        default="validation", metadata=_h("Split of the held-out problems.", choices=("validation", "test"))
    )
    eval_problems: int = field(default=200, metadata=_h("Held-out problems to measure on (0: do not measure)."))
    eval_k: int = field(default=16, metadata=_h("Policy samples per held-out problem (best-of-k selection)."))
    eval_temperature: float = field(default=0.8, metadata=_h("Sampling temperature of the held-out samples."))
    epochs: float = field(default=2.0, metadata=_h("Passes over the training data."))
    max_steps: int = field(
        default=-1, metadata=_h("Stop after this many optimizer steps (-1: run the epochs); a few make a smoke test.")
    )
    batch_size: int = field(default=16, metadata=_h("Training examples per optimizer step (see the trainer's help)."))
    grad_accum: int = field(default=1, metadata=_h("Gradient accumulation steps."))
    learning_rate: float = field(default=2e-4, metadata=_h("Peak learning rate (AdamW)."))
    lr_scheduler: str = field(
        default="cosine",
        metadata=_h("Learning-rate schedule.", choices=("cosine", "linear", "constant", "constant_with_warmup")),
    )
    warmup_ratio: float = field(default=0.05, metadata=_h("Fraction of the steps spent warming the learning rate up."))
    weight_decay: float = field(default=0.01, metadata=_h("AdamW weight decay."))
    max_length: int = field(default=512, metadata=_h("Drop training sequences longer than this many tokens."))
    logging_steps: int = field(default=20, metadata=_h("Log the loss every this many steps."))
    seed: int = field(
        default=0, metadata=_h("Seed of the head initialisation, the data order and the sampling engine.")
    )
    threads: int = field(default=0, metadata=_h("torch CPU threads (0: torch's default)."))
    overwrite: bool = field(default=False, metadata=_h("Replace the contents of a non-empty output folder."))


@dataclass
class RMArgs(VerifierArgs):
    """Train an outcome reward model (a sequence classifier with one logit, higher is better) on policy samples.

    Bradley-Terry (``--loss bt``, TRL's RewardTrainer) on (correct, wrong) pairs of the same prompt, or a
    Plackett-Luce listwise loss (``--loss pl``) over the ranked samples of each prompt.
    """

    dataset: str | None = field(
        default=None,
        metadata=_h(
            "Your own data instead of policy samples: JSONL, JSON or Parquet. --loss bt: columns `prompt` (a user "
            "message, or a list of {role, content} turns), `chosen`, `rejected` (assistant texts). --loss pl: "
            "`prompt`, `completions` (a list of assistant texts), `ranks` (one integer each, 0 = best; ties allowed).",
            metavar="FILE",
        ),
    )
    loss: str = field(
        default="bt",
        metadata=_h("bt: Bradley-Terry on pairs; pl: Plackett-Luce over each prompt's list.", choices=("bt", "pl")),
    )
    max_pairs_per_prompt: int = field(
        default=8, metadata=_h("--loss bt on policy samples: at most this many (correct, wrong) pairs per prompt.")
    )
    hard_negatives: int = field(
        default=0,
        metadata=_h(
            "Also learn, for every training problem, its gold trace against this many corrupted copies (one step "
            "wrong, later steps carried forward, the final answer following them; `ponder.training.prm_negatives`): "
            "--loss bt adds (gold, corrupted) pairs, --loss pl one list per problem with the gold trace first. "
            "0 = none.",
            metavar="K",
        ),
    )
    max_list_size: int = field(
        default=8, metadata=_h("--loss pl: at most this many completions per prompt's list (a seeded subset).")
    )
