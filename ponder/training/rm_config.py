"""``RMArgs`` (``ponder train rm``) and the ``VerifierArgs`` it shares with ``ponder train prm``, one field per flag."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.core.sidecar import models_dir
from ponder.tasks.levels import ALL_LEVELS
from ponder.training.config_args import OptimArgs, arg, shared
from ponder.training.lora import LoraArgs
from ponder.verifiers.formats import NUMBER_ORDERS


@dataclass
class VerifierInputs:
    """The input flags of the verifier trainers: the policy, its samples, the starting model, the held-out problems."""

    output_dir: str = field(
        metadata=arg("Folder the trained verifier (a Hugging Face folder), its sidecar and logs go to.")
    )
    dataset: str | None = field(
        default=None, metadata=arg("Your own training data (see the trainer's help).", metavar="FILE")
    )
    policy: str = field(
        default_factory=lambda: str(models_dir() / "policy"),
        metadata=arg("Policy whose sampled solutions are the training and evaluation data.", metavar="DIR"),
    )
    base_model: str | None = field(
        default=None,
        metadata=arg(
            "Causal LM folder the verifier starts from (any Hugging Face causal LM with a tokenizer: its body is kept, "
            "a new one-logit head added; a tokenizer without a chat template gets a plain Question/Answer one); "
            "default: --policy. Alias: --init-model.",
            metavar="DIR",
            aliases=["--init-model", "--init_model"],
        ),
    )
    engine: str = field(
        default="vllm",
        metadata=arg("Engine that samples the policy (vllm is much faster on CPU).", choices=("vllm", "hf")),
    )
    samples: str = field(
        default="build/samples/train.jsonl",
        metadata=arg(
            "Policy samples of the training problems (JSONL): read when it holds samples of the requested problems, "
            "else generated and written there.",
            metavar="FILE",
        ),
    )
    eval_samples: str = field(
        default="build/samples/validation.jsonl",
        metadata=arg("The same for the held-out problems the verifier is measured on.", metavar="FILE"),
    )
    train_problems: int = field(default=800, metadata=arg("Training problems (train seed range, levels round-robin)."))
    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=arg("Difficulty levels of the training and held-out problems.", choices=ALL_LEVELS),
    )
    k: int = field(default=8, metadata=arg("Policy samples per training problem."))
    temperature: float = field(default=1.0, metadata=arg("Sampling temperature of the training samples."))
    eval_split: str = field(
        default="validation", metadata=arg("Split of the held-out problems.", choices=("validation", "test"))
    )
    eval_problems: int = field(default=200, metadata=arg("Held-out problems to measure on (0: do not measure)."))
    eval_k: int = field(default=16, metadata=arg("Policy samples per held-out problem (best-of-k selection)."))
    eval_temperature: float = field(default=0.8, metadata=arg("Sampling temperature of the held-out samples."))


@dataclass
class VerifierArgs(LoraArgs, OptimArgs, VerifierInputs):
    """Options shared by the verifier trainers: where the policy samples come from, optimisation, evaluation."""

    max_length: int = field(default=512, metadata=arg("Drop training sequences longer than this many tokens."))
    logging_steps: int = shared("logging_steps", 20)
    seed: int = shared("seed", 0, "Seed of the head initialisation, the data order and the sampling engine.")
    threads: int = shared("threads", 0)
    overwrite: bool = shared("overwrite", False)


@dataclass
class RMArgs(VerifierArgs):
    """Train an outcome reward model (one score per answer, higher is better) on policy samples or your pairs.

    Bradley-Terry (``--loss bt``, TRL's RewardTrainer) on (correct, wrong) pairs of the same prompt, or a
    Plackett-Luce listwise loss (``--loss pl``) over the ranked samples of each prompt, for a sequence classifier;
    or, with ``--head token-min``, Bradley-Terry for a pooling head over a frozen causal LM's reading of each token.
    """

    dataset: str | None = field(
        default=None,
        metadata=arg(
            "Your own data instead of policy samples: JSONL, JSON or Parquet. --loss bt: columns `prompt` (a user "
            "message, or a list of {role, content} turns), `chosen`, `rejected` (assistant texts). --loss pl: "
            "`prompt`, `completions` (a list of assistant texts), `ranks` (one integer each, 0 = best; ties allowed).",
            metavar="FILE",
        ),
    )
    head: str = field(
        default="sequence",
        metadata=arg(
            "sequence: a one-logit head on the last token, body and head trained (TRL's RewardTrainer for --loss bt). "
            "token-min: the body stays frozen; --base-model must be a causal LM (such as the generative PRM), whose "
            "reading of every answer token (its log-probability, its first choice's, its entropy, the step's so far) "
            "goes through a learned linear head, pooled by a soft minimum (--pool-temperature), trained with "
            "Bradley-Terry on the same pairs (--loss bt only; --learning-rate, --epochs and --batch-size apply to "
            "the head).",
            choices=("sequence", "token-min"),
        ),
    )
    pool_temperature: float = field(
        default=0.3,
        metadata=arg("--head token-min: temperature of the soft minimum over tokens (smaller: closer to the min)."),
    )
    loss: str = field(
        default="bt",
        metadata=arg("bt: Bradley-Terry on pairs; pl: Plackett-Luce over each prompt's list.", choices=("bt", "pl")),
    )
    max_pairs_per_prompt: int = field(
        default=8, metadata=arg("--loss bt on policy samples: at most this many (correct, wrong) pairs per prompt.")
    )
    hard_negatives: int = field(
        default=0,
        metadata=arg(
            "Also learn, for every training problem, its gold trace against this many corrupted copies (one step "
            "wrong, later steps carried forward, the final answer following them; `ponder.training.prm_negatives`): "
            "--loss bt adds (gold, corrupted) pairs, --loss pl one list per problem with the gold trace first. "
            "0 = none.",
            metavar="K",
        ),
    )
    max_list_size: int = field(
        default=8, metadata=arg("--loss pl: at most this many completions per prompt's list (a seeded subset).")
    )
    number_order: str = field(
        default="as_written",
        metadata=arg(
            "How the ORM sees every number, in training and serving alike (recorded in its ponder.json): as_written, "
            "or reversed (least significant digit first; pair it with --base-model of a model trained that way, "
            "such as the generative PRM).",
            choices=NUMBER_ORDERS,
        ),
    )
