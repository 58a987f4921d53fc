"""``ponder train sft``: supervised fine-tuning with TRL's ``SFTTrainer``, loss on the assistant turn only."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.core.sidecar import SIDECAR
from ponder.tasks import SPLITS, check_levels, check_tasks, generate_problems
from ponder.training.chat_mix import ChatMix, mixed_chats
from ponder.training.common import (
    TrainingInputError,
    check_messages,
    check_model_dir,
    load_table,
    log_callback,
    policy_sidecar,
    training_run,
    versions,
    write_json,
)
from ponder.training.config_args import training_arguments
from ponder.training.lora import check_lora, device_args, merged, peft_config
from ponder.training.policy_common import load_chat_lm
from ponder.training.sft_config import SFTArgs

log = logging.getLogger("ponder.train.sft")


@dataclasses.dataclass(frozen=True)
class SFTTask:
    """What a trainer built on SFT changes: how the model sees the chats, its sidecar, its command's name."""

    view: Callable[[str], str] | None = None  # applied to every message's text, in training data alike
    sidecar: dict[str, Any] | None = None  # None: the policy's (generated data), or the init model's
    command: str = "ponder train sft"

    def view_rows(self, rows: list[list[dict]]) -> list[list[dict]]:
        if self.view is None:
            return rows
        return [[{**m, "content": self.view(m["content"])} for m in chat] for chat in rows]


def check_args(cfg: SFTArgs) -> None:
    """Refuse inconsistent numbers before anything is loaded."""
    positive = ("train_size", "batch_size", "grad_accum", "max_length", "logging_steps", "num_layers")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise TrainingInputError(f"--{name.replace('_', '-')} must be positive")
    if cfg.eval_size < 0 or cfg.threads < 0 or cfg.data_offset < 0:
        raise TrainingInputError("--eval-size, --threads and --data-offset must not be negative")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise TrainingInputError("--max-steps must be positive, or -1 to run the epochs")
    if cfg.epochs <= 0 or cfg.learning_rate <= 0:
        raise TrainingInputError("--epochs and --learning-rate must be positive")
    if cfg.init_model is None and (cfg.hidden_size <= 0 or cfg.hidden_size % 64):
        raise TrainingInputError(f"--hidden-size {cfg.hidden_size} must be a positive multiple of 64 (head dim 64)")
    try:
        check_levels(cfg.levels)
        check_tasks(cfg.tasks)
        chat_mix(cfg).check()
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    check_lora(cfg)


def chat_mix(cfg: SFTArgs) -> ChatMix:
    """How the generated chats are worded and what extras they hold."""
    return ChatMix(
        natural=cfg.natural_fraction,
        system=cfg.system_fraction,
        two_term=cfg.two_term_fraction,
        off_topic=cfg.off_topic_fraction,
        wide_system=cfg.wide_system_prompts,
        wide_questions=cfg.wide_questions,
        instruction=cfg.instruction_fraction,
    )


def training_rows(cfg: SFTArgs) -> tuple[list[list[dict]], list[list[dict]], dict[str, Any]]:
    """Train and validation chats, and a description of where they came from."""
    if cfg.dataset:
        rows = [r["messages"] for r in load_table(cfg.dataset, ("messages",))]
        check_messages(rows, cfg.dataset)
        n_eval = min(cfg.eval_size, len(rows) // 10)
        info = {"source": str(cfg.dataset), "rows": len(rows), "eval_rows_held_out": n_eval}
        return rows[n_eval:], rows[:n_eval], info
    log.info("generating %d train and %d validation problems", cfg.train_size, cfg.eval_size)
    train = generate_problems("train", cfg.train_size, cfg.levels, cfg.tasks, offset=cfg.data_offset)
    val = generate_problems("validation", cfg.eval_size, sorted(set(cfg.levels)), cfg.tasks) if cfg.eval_size else []
    info = {
        "source": "reasoning-gym (generated)",
        "tasks": list(cfg.tasks),
        "levels_round_robin": list(cfg.levels),
        "train": {
            "split": "train",
            "count": len(train),
            "seeds": [SPLITS["train"].start + cfg.data_offset, SPLITS["train"].start + cfg.data_offset + len(train)],
        },
        "validation": {
            "split": "validation",
            "count": len(val),
            "seeds": [SPLITS["validation"].start, SPLITS["validation"].start + len(val)],
        },
    }
    mix = chat_mix(cfg)
    info["mix"] = dataclasses.asdict(mix)
    return mixed_chats(train, "train", mix, cfg.data_offset), mixed_chats(val, "validation", mix), info


def load_model(cfg: SFTArgs) -> tuple[Any, Any]:
    """The tokenizer and model to train: ``--init-model`` or a new random Llama on the char tokenizer."""
    if cfg.init_model:
        return load_chat_lm(cfg.init_model, cfg)
    from ponder.training.tokenizer import build_tokenizer, new_llama

    tokenizer = build_tokenizer()
    model = new_llama(
        tokenizer,
        hidden=cfg.hidden_size,
        layers=cfg.num_layers,
        intermediate=cfg.intermediate_size,
        max_len=cfg.max_position_embeddings,
        seed=cfg.seed,
    )
    return tokenizer, model


def train_sft(cfg: SFTArgs, task: SFTTask | None = None) -> Path:
    """Train, then save the model folder (weights, tokenizer with chat template, sidecar, config, logs)."""
    check_args(cfg)
    if cfg.init_model:
        check_model_dir(cfg.init_model)
    if cfg.dataset:  # read and check it before touching the output folder
        training_rows(dataclasses.replace(cfg, eval_size=0))
    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, handler):
        return _train(cfg, out, handler, task or SFTTask())


def _sft_config(cfg: SFTArgs, out: Path) -> Any:
    """TRL's ``SFTConfig`` for the run: CPU, float32, loss on the assistant turn, no checkpoints or evaluation."""
    from trl import SFTConfig

    return training_arguments(
        cfg,
        out,
        SFTConfig,
        assistant_only_loss=True,
        max_length=cfg.max_length,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        gradient_checkpointing=False,  # TRL turns it on by default; a tiny model does not need the memory
        **device_args(cfg),
    )


def _save_folder(cfg: SFTArgs, out: Path, trainer: Any, tokenizer: Any, sidecar: dict[str, Any] | None) -> None:
    """Weights, tokenizer and sidecar into ``out``; the checkpoints and the pickled arguments removed."""
    if cfg.lora_r:  # the adapters merged into the weights, so the folder serves like any other
        merged(trainer.model).save_pretrained(str(out))
    else:
        trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; training_config.json records the same
    if sidecar is not None:
        write_json(out / SIDECAR, sidecar)
    elif not cfg.dataset:
        write_json(out / SIDECAR, policy_sidecar())
    elif cfg.init_model and (Path(cfg.init_model) / SIDECAR).is_file():
        shutil.copy(Path(cfg.init_model) / SIDECAR, out / SIDECAR)


def _train(cfg: SFTArgs, out: Path, handler: logging.Handler, task: SFTTask) -> Path:
    """Build the chats and the model, train, evaluate on the validation chats, save the folder and its config."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    train_rows, eval_rows, data_info = training_rows(cfg)
    train_rows, eval_rows = task.view_rows(train_rows), task.view_rows(eval_rows)
    tokenizer, model = load_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %s, %.2fM parameters; %d train / %d eval rows",
        type(model).__name__,
        n_params / 1e6,
        len(train_rows),
        len(eval_rows),
    )
    trainer = SFTTrainer(
        model=model,
        args=_sft_config(cfg, out),
        train_dataset=Dataset.from_dict({"messages": train_rows}),
        eval_dataset=Dataset.from_dict({"messages": eval_rows}) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[log_callback(out / "logs" / "train.jsonl", handler)],
        peft_config=peft_config(cfg),
    )
    prepared = time.time()
    result = trainer.train()
    trained = time.time()
    metrics = dict(result.metrics)
    if eval_rows:
        metrics.update(trainer.evaluate())
    _save_folder(cfg, out, trainer, tokenizer, task.sidecar)
    write_json(
        out / "training_config.json",
        {
            "command": task.command,
            "args": dataclasses.asdict(cfg),
            "data": data_info,
            "parameters": n_params,
            "steps": trainer.state.global_step,
            "seconds": {
                "prepare": round(prepared - started, 1),
                "train": round(trained - prepared, 1),
                "total": round(time.time() - started, 1),
            },
            "threads": torch.get_num_threads(),
            "metrics": metrics,
            "versions": versions(),
        },
    )
    log.info("saved %s (%d steps, %.1f min)", out, trainer.state.global_step, (time.time() - started) / 60)
    return out
