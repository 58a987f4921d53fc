"""``SFTArgs``: every option of ``ponder train sft``, one field each, whose help text is the CLI flag's help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ponder.tasks.levels import ALL_LEVELS, TASKS


def _h(text: str, **extra: object) -> dict:
    return {"help": text, **extra}


@dataclass
class SFTArgs:
    """Supervised fine-tuning of a policy on chat data (default: the bundled arithmetic traces)."""

    output_dir: str = field(
        metadata=_h("Folder the trained model (a Hugging Face folder), its sidecar and logs go to.")
    )
    dataset: str | None = field(
        default=None,
        metadata=_h(
            "JSONL, JSON or Parquet file with a `messages` column (a list of {role, content} turns that ends with "
            "the assistant turn to learn). Default: generate arithmetic problems with their reasoning traces.",
            metavar="FILE",
        ),
    )
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS), metadata=_h("Generated data: reasoning-gym tasks.", choices=TASKS)
    )
    levels: list[int] = field(
        default_factory=lambda: list(ALL_LEVELS),
        metadata=_h(
            "Generated data: difficulty levels, round-robin; repeat a level to weight it.",
            choices=ALL_LEVELS,
        ),
    )
    train_size: int = field(default=96_000, metadata=_h("Generated data: training problems (train seed range)."))
    eval_size: int = field(
        default=200, metadata=_h("Validation problems (validation seed range) for the final eval loss; 0: none.")
    )
    init_model: str | None = field(
        default=None,
        metadata=_h("Start from this model folder (with its tokenizer) instead of a new random Llama.", metavar="DIR"),
    )
    hidden_size: int = field(default=128, metadata=_h("New model: hidden size, a multiple of 64 (head dim 64)."))
    num_layers: int = field(default=4, metadata=_h("New model: decoder layers."))
    intermediate_size: int = field(default=512, metadata=_h("New model: MLP width."))
    max_position_embeddings: int = field(default=1024, metadata=_h("New model: context length it is made for."))
    epochs: float = field(default=1.0, metadata=_h("Passes over the training data."))
    max_steps: int = field(
        default=-1, metadata=_h("Stop after this many optimizer steps (-1: run the epochs); a few make a smoke test.")
    )
    batch_size: int = field(default=32, metadata=_h("Examples per optimizer step (per device, before accumulation)."))
    grad_accum: int = field(default=1, metadata=_h("Gradient accumulation steps."))
    learning_rate: float = field(default=1e-3, metadata=_h("Peak learning rate (AdamW)."))
    lr_scheduler: str = field(
        default="cosine",
        metadata=_h("Learning-rate schedule.", choices=("cosine", "linear", "constant", "constant_with_warmup")),
    )
    warmup_ratio: float = field(default=0.03, metadata=_h("Fraction of the steps spent warming the learning rate up."))
    weight_decay: float = field(default=0.01, metadata=_h("AdamW weight decay."))
    group_by_length: bool = field(
        default=False,
        metadata=_h(
            "Batch examples of similar length together: less padding, but single-level batches kept the bundled "
            "policy on its loss plateau far longer, so it is off by default."
        ),
    )
    max_length: int = field(default=512, metadata=_h("Truncate each tokenized example to this many tokens."))
    logging_steps: int = field(default=50, metadata=_h("Log the loss every this many steps."))
    seed: int = field(default=0, metadata=_h("Seed of the model initialisation and the data order."))
    threads: int = field(default=0, metadata=_h("torch CPU threads (0: torch's default)."))
    overwrite: bool = field(default=False, metadata=_h("Replace the contents of a non-empty output folder."))
