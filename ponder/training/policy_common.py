"""Shared pieces of the policy trainers: checks, the policy and its prompts, a TRL run, the saved folder."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.core.sidecar import SIDECAR
from ponder.tasks import check_levels, check_tasks, generate_problems
from ponder.training.common import (
    TrainingInputError,
    check_model_dir,
    load_table,
    log_callback,
    policy_sidecar,
    training_run,
    versions,
    write_json,
)
from ponder.training.config_args import training_arguments
from ponder.training.lora import check_lora, describe, device_args, load_kwargs, merged, peft_config

log = logging.getLogger("ponder.train.policy")


def check_positive(cfg: Any, *names: str) -> None:
    """Refuse a zero or negative value of any of the named flags."""
    for name in names:
        if getattr(cfg, name) <= 0:
            raise TrainingInputError(f"--{name.replace('_', '-')} must be positive")


def check_policy_args(cfg: Any) -> None:
    """Refuse inconsistent shared flags and a policy folder that is not one, before anything loads."""
    check_positive(cfg, "batch_size", "grad_accum", "logging_steps", "epochs", "learning_rate")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise TrainingInputError("--max-steps must be positive, or -1 to run the epochs")
    if cfg.threads < 0:
        raise TrainingInputError("--threads must not be negative")
    try:
        if hasattr(cfg, "levels"):  # the trainers that generate prompts
            check_levels(cfg.levels)
            check_tasks(cfg.tasks)
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    check_lora(cfg)
    check_model_dir(cfg.policy)


def load_chat_lm(folder: str | Path, cfg: Any) -> tuple[Any, Any]:
    """The tokenizer (which must have a chat template) and the causal LM of ``folder``, loaded as ``cfg`` says
    (4-bit under ``--qlora``); refused with a clear message when either does not load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = check_model_dir(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, **load_kwargs(cfg))
    except (OSError, ValueError) as exc:
        raise TrainingInputError(f"{folder} does not load as a causal LM with its tokenizer: {exc}") from None
    if not tokenizer.chat_template:
        raise TrainingInputError(f"{folder}: the tokenizer has no chat template")
    return tokenizer, model


def load_policy(cfg: Any) -> tuple[Any, Any]:
    """The tokenizer and the causal LM of ``--policy`` (4-bit under ``--qlora``), a pad token guaranteed."""
    tokenizer, model = load_chat_lm(cfg.policy, cfg)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def generated_prompts(
    split: str, count: int, levels: list[int], tasks: list[str], offset: int = 0
) -> list[dict[str, Any]]:
    """Arithmetic problems as prompt rows: ``prompt`` (the user turn) and the problem's columns (for the scorer)."""
    problems = generate_problems(split, count, levels, tasks, offset)
    return [{"prompt": p.prompt_messages(), **p.to_record()} for p in problems]


def user_prompts(path: str) -> list[dict[str, Any]]:
    """Prompt rows of a user file: ``prompt`` (a string or a list of {role, content} turns), other columns kept."""
    rows = load_table(path, ("prompt",))
    for i, row in enumerate(rows):
        prompt = row["prompt"]
        if isinstance(prompt, str) and prompt.strip():
            row["prompt"] = [{"role": "user", "content": prompt}]
        elif not (
            isinstance(prompt, list)
            and prompt
            and all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in prompt)
            and prompt[-1].get("role") == "user"
        ):
            raise TrainingInputError(
                f"{path}: row {i}: `prompt` must be a non-empty string or a list of {{role, content}} turns ending "
                "with a user turn"
            )
    return rows


def trl_args(cfg: Any, out: Path, config_class: Any, **extra: Any) -> Any:
    """A TRL config for a CPU run of ``cfg`` (no gradient checkpointing: the models are tiny)."""
    return training_arguments(cfg, out, config_class, gradient_checkpointing=False, **device_args(cfg), **extra)


def save_policy(cfg: Any, out: Path, model: Any, tokenizer: Any) -> None:
    """The merged weights, the tokenizer and the policy's sidecar into ``out``; checkpoints and pickles removed."""
    plain = merged(model)
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "training_args.bin").unlink(missing_ok=True)
    source = Path(cfg.policy) / SIDECAR
    if source.is_file():
        shutil.copy(source, out / SIDECAR)
    else:  # a policy without one: it was trained on the arithmetic traces or it would not be here
        write_json(out / SIDECAR, policy_sidecar())


def write_config(cfg: Any, out: Path, command: str, started: float, **details: Any) -> None:
    """``training_config.json``: the command, its arguments, the data, the steps, timings and library versions."""
    import torch

    write_json(
        out / "training_config.json",
        {
            "command": command,
            "args": dataclasses.asdict(cfg),
            **describe(cfg),
            **details,
            "seconds": round(time.time() - started, 1),
            "threads": torch.get_num_threads(),
            "versions": versions(),
        },
    )


def run_trl(
    cfg: Any,
    command: str,
    build: Callable[[Path, Any, Any, list[Any]], tuple[Any, dict[str, Any]]],
    check: Callable[[], None] | None = None,
) -> Path:
    """The common life of a TRL policy run: check, prepare the folder, load the policy, ``build`` the trainer
    (``build(out, tokenizer, model, callbacks) -> (trainer, data description)``), train, save merged, describe."""
    import torch

    check_policy_args(cfg)
    if check is not None:
        check()  # the trainer's own data checks, before the output folder is touched
    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, handler):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        started = time.time()
        tokenizer, model = load_policy(cfg)
        callbacks = [log_callback(out / "logs" / "train.jsonl", handler)]
        trainer, data = build(out, tokenizer, model, callbacks)
        result = trainer.train()
        save_policy(cfg, out, trainer.model, tokenizer)
        steps = trainer.state.global_step
        write_config(cfg, out, command, started, data=data, steps=steps, metrics=dict(result.metrics))
        log.info("saved %s (%d steps, %.1f min)", out, steps, (time.time() - started) / 60)
        return out


def lora_for(cfg: Any) -> Any:
    """The PEFT config TRL's trainers take (``None`` without LoRA)."""
    return peft_config(cfg)
