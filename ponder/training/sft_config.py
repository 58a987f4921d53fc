"""``SFTArgs``: every option of ``ponder train sft``, one field each, whose help text is the CLI flag's help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.tasks.levels import ALL_LEVELS, TASKS
from ponder.training.config_args import OptimArgs, arg, shared
from ponder.training.lora import LoraArgs


@dataclass
class SFTInputs:
    """The data and model flags of ``ponder train sft``."""

    output_dir: str = field(
        metadata=arg("Folder the trained model (a Hugging Face folder), its sidecar and logs go to.")
    )
    dataset: str | None = field(
        default=None,
        metadata=arg(
            "JSONL, JSON or Parquet file with a `messages` column (a list of {role, content} turns that ends with "
            "the assistant turn to learn). Default: generate arithmetic problems with their reasoning traces.",
            metavar="FILE",
        ),
    )
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS), metadata=arg("Generated data: reasoning-gym tasks.", choices=TASKS)
    )
    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=arg(
            "Generated data: difficulty levels, round-robin; repeat a level to weight it.",
            choices=ALL_LEVELS,
        ),
    )
    train_size: int = field(default=96_000, metadata=arg("Generated data: training problems (train seed range)."))
    eval_size: int = field(
        default=200, metadata=arg("Validation problems (validation seed range) for the final eval loss; 0: none.")
    )
    data_offset: int = field(
        default=0,
        metadata=arg(
            "Generated data: skip this many train seeds (and as many of the extras'), so that a later stage "
            "trains on problems an earlier one (with the same --train-size or less) never saw."
        ),
    )
    natural_fraction: float = field(
        default=0.0,
        metadata=arg(
            "Generated data: fraction of problems asked as people ask ('What is 12+7?', '3*41?', 'Compute 25 * 4.', "
            "bare expressions) instead of reasoning-gym's wording (ponder/tasks/phrasings.py)."
        ),
    )
    system_fraction: float = field(
        default=0.0, metadata=arg("Generated data: fraction of chats that open with a system prompt.")
    )
    wide_questions: bool = field(
        default=False,
        metadata=arg(
            "Generated data: ask half the natural questions in wordings composed from openers, requests and "
            "closers instead of the fixed training wordings."
        ),
    )
    instruction_fraction: float = field(
        default=0.0,
        metadata=arg(
            "Generated data: fraction of the natural questions followed by an instruction on how to answer ('Give "
            "only the final number.', 'Show your work.')."
        ),
    )
    wide_system_prompts: bool = field(
        default=False,
        metadata=arg(
            "Generated data: compose system prompts from many personas and instructions instead of drawing one "
            "of five fixed ones."
        ),
    )
    two_term_fraction: float = field(
        default=0.0,
        metadata=arg(
            "Generated data: extra two-term sums and differences mixing one- and two-digit numbers ('12 + 7'), as "
            "a fraction of --train-size (reasoning-gym never mixes digit counts within a problem)."
        ),
    )
    off_topic_fraction: float = field(
        default=0.0,
        metadata=arg(
            "Generated data: extra prompts that are not arithmetic ('Hello, who are you?'), as a fraction of "
            "--train-size, answered with a short refusal after an empty think block."
        ),
    )
    init_model: str | None = field(
        default=None,
        metadata=arg("Start from this model folder (with its tokenizer) instead of a new random Llama.", metavar="DIR"),
    )
    hidden_size: int = field(default=128, metadata=arg("New model: hidden size, a multiple of 64 (head dim 64)."))
    num_layers: int = field(default=4, metadata=arg("New model: decoder layers."))
    intermediate_size: int = field(default=512, metadata=arg("New model: MLP width."))
    max_position_embeddings: int = field(default=1024, metadata=arg("New model: context length it is made for."))


@dataclass
class SFTArgs(OptimArgs, LoraArgs, SFTInputs):
    """Supervised fine-tuning of a policy on chat data (default: the bundled arithmetic traces)."""

    epochs: float = shared("epochs", 1.0)
    batch_size: int = shared("batch_size", 32, "Examples per optimizer step (per device, before accumulation).")
    learning_rate: float = shared("learning_rate", 1e-3)
    warmup_ratio: float = shared("warmup_ratio", 0.03)
    group_by_length: bool = field(
        default=False,
        metadata=arg(
            "Batch examples of similar length together: less padding, but single-level batches kept the bundled "
            "policy on its loss plateau far longer, so it is off by default."
        ),
    )
    max_length: int = field(default=512, metadata=arg("Truncate each tokenized example to this many tokens."))
    logging_steps: int = shared("logging_steps", 50)
    seed: int = shared("seed", 0, "Seed of the model initialisation and the data order.")
    threads: int = shared("threads", 0)
    overwrite: bool = shared("overwrite", False)
