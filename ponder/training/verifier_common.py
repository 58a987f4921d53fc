"""What the verifier trainers (``rm``, ``prm``) share: argument checks, user-data checks, models, saving."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ponder.tasks import SPLITS, check_levels
from ponder.training.common import SIDECAR, TrainingInputError, arithmetic_sidecar, check_model_dir, write_json
from ponder.training.rm_config import VerifierArgs

log = logging.getLogger("ponder.train.verifier")

ORM_SIDECAR = {"kind": "orm", "format": "sequence_classification"}
PRM_SIDECAR = {"kind": "prm", "format": "token_classification"}


def check_verifier_args(cfg: VerifierArgs) -> None:
    """Refuse inconsistent numbers and missing model folders before anything is loaded or written."""
    positive = ("train_problems", "k", "eval_k", "batch_size", "grad_accum", "max_length", "logging_steps")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise TrainingInputError(f"--{name.replace('_', '-')} must be positive")
    if cfg.eval_problems < 0 or cfg.threads < 0:
        raise TrainingInputError("--eval-problems and --threads must not be negative")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise TrainingInputError("--max-steps must be positive, or -1 to run the epochs")
    if cfg.epochs <= 0 or cfg.learning_rate <= 0 or cfg.temperature <= 0 or cfg.eval_temperature <= 0:
        raise TrainingInputError("--epochs, --learning-rate and the temperatures must be positive")
    try:
        check_levels(cfg.levels)
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    check_model_dir(cfg.init_model or cfg.policy)
    if not cfg.dataset or cfg.eval_problems:
        check_model_dir(cfg.policy)


def check_prompt(value: Any, where: str) -> list[dict[str, str]]:
    """A user-data prompt as chat messages: a string is one user turn; a list must be {role, content} turns."""
    if isinstance(value, str):
        if not value:
            raise TrainingInputError(f"{where}: `prompt` is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise TrainingInputError(f"{where}: `prompt` must be a string or a non-empty list of {{role, content}} turns")
    for turn in value:
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise TrainingInputError(f"{where}: `prompt` must hold {{role, content}} objects, got {turn!r:.80}")
        if turn["role"] not in ("system", "user", "assistant") or not isinstance(turn["content"], str):
            raise TrainingInputError(f"{where}: `prompt` roles must be system/user/assistant and contents strings")
    if value[-1]["role"] == "assistant":
        raise TrainingInputError(f"{where}: `prompt` must end with a user turn (the answer is scored after it)")
    return [dict(turn) for turn in value]


def check_completion(value: Any, where: str, column: str) -> str:
    """An assistant text: a string, or a one-turn list ``[{role: assistant, content}]`` (TRL's chat format)."""
    one_turn = isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
    if one_turn and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str):
        value = value[0]["content"]
    if not isinstance(value, str):
        raise TrainingInputError(f"{where}: `{column}` must be a string (the assistant's text), got {value!r:.60}")
    if not value:
        raise TrainingInputError(f"{where}: `{column}` is empty")
    return value


def load_verifier(folder: str | Path, head: str) -> tuple[Any, Any]:
    """Tokenizer and a one-logit ``AutoModelFor{Sequence,Token}Classification`` whose body is the causal LM's."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    auto = AutoModelForSequenceClassification if head == "sequence" else AutoModelForTokenClassification
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = auto.from_pretrained(folder, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TrainingInputError(f"{folder} does not load as a model with its tokenizer: {exc}") from None
    if not tokenizer.chat_template:
        raise TrainingInputError(f"{folder}: the tokenizer has no chat template")
    if tokenizer.pad_token is None:  # sequence classifiers find the last real token by the pad id
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def train_records(cfg: VerifierArgs, mc_rollouts: int = 0) -> list[dict[str, Any]]:
    """Graded policy samples of the training problems (cached in ``--samples``)."""
    from ponder.training.samples import collect_samples

    return collect_samples(
        cfg.policy,
        split="train",
        count=cfg.train_problems,
        levels=cfg.levels,
        k=cfg.k,
        temperature=cfg.temperature,
        engine=cfg.engine,
        seed=cfg.seed,
        mc_rollouts=mc_rollouts,
        cache=cfg.samples,
    )


def eval_records(cfg: VerifierArgs) -> list[dict[str, Any]]:
    """Graded policy samples of the held-out problems (cached in ``--eval-samples``)."""
    from ponder.training.samples import collect_samples

    return collect_samples(
        cfg.policy,
        split=cfg.eval_split,
        count=cfg.eval_problems,
        levels=sorted(set(cfg.levels)),
        k=cfg.eval_k,
        temperature=cfg.eval_temperature,
        engine=cfg.engine,
        seed=cfg.seed,
        cache=cfg.eval_samples,
    )


def samples_info(cfg: VerifierArgs, records: list[dict[str, Any]], split: str, count: int, k: int, t: float) -> dict:
    """Where a set of policy samples came from, for ``training_config.json`` and the model card."""
    start = SPLITS[split].start
    return {
        "source": f"policy samples of {cfg.policy}",
        "split": split,
        "problems": count,
        "seeds": [start, start + count],
        "levels": sorted(set(cfg.levels)),
        "k": k,
        "temperature": t,
        "samples": len(records),
        "correct": round(sum(r["correct"] for r in records) / max(1, len(records)), 4),
        "engine": cfg.engine,
    }


def trainer_arguments(cfg: VerifierArgs, out: Path, config_class: Any = None, **extra: Any) -> Any:
    """``TrainingArguments`` (or a subclass such as TRL's ``RewardConfig``) for a CPU run of ``cfg``."""
    if config_class is None:
        from transformers import TrainingArguments as config_class
    return config_class(
        output_dir=str(out / "checkpoints"),
        bf16=False,
        use_cpu=True,
        report_to=[],
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        torch_compile=False,
        **extra,
    )


def save_verifier(
    out: Path,
    model: Any,
    tokenizer: Any,
    sidecar: dict[str, Any],
    *,
    command: str,
    cfg: VerifierArgs,
    data: dict[str, Any],
    steps: int,
    seconds: dict[str, float],
    metrics: dict[str, Any],
) -> None:
    """Weights, tokenizer (with its chat template), ``ponder.json`` and ``training_config.json``."""
    import torch

    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the JSON below records the same
    write_json(out / SIDECAR, sidecar)
    write_json(
        out / "training_config.json",
        {
            "command": command,
            "args": dataclasses.asdict(cfg),
            "data": data,
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": steps,
            "seconds": seconds,
            "threads": torch.get_num_threads(),
            "metrics": metrics,
            "versions": versions(),
        },
    )


def orm_sidecar() -> dict[str, Any]:
    """``ponder.json`` of an outcome reward model."""
    return {**ORM_SIDECAR, **arithmetic_sidecar()}


def prm_sidecar() -> dict[str, Any]:
    """``ponder.json`` of a process reward model (score: the sigmoid of the logit at each step's end)."""
    shared = arithmetic_sidecar()
    return {**PRM_SIDECAR, "step_separator": shared["step_separator"], "score": "sigmoid", **shared}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("torch", "transformers", "trl", "reasoning-gym")}


def read_user_table(path: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """``load_table`` with the row count logged."""
    from ponder.training.common import load_table

    rows = load_table(path, required)
    log.info("read %d rows from %s", len(rows), path)
    return rows


class Timer:
    """Wall-clock marks of a run: prepare, train, measure."""

    def __init__(self) -> None:
        self.start = time.time()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def seconds(self) -> dict[str, float]:
        out, last = {}, self.start
        for name, t in self.marks.items():
            out[name] = round(t - last, 1)
            last = t
        out["total"] = round(time.time() - self.start, 1)
        return out


def dump_json(path: Path, data: Any) -> None:
    """``write_json`` that accepts the numpy/torch scalars a Trainer's metrics may hold."""
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


def update_seconds(out: Path, timer: Timer) -> None:
    """Record the measuring time in ``training_config.json`` too, and re-render the card with it."""
    from ponder.training.verifier_metrics import write_card

    path = out / "training_config.json"
    config = json.loads(path.read_text())
    config["seconds"] = timer.seconds()
    write_json(path, config)
    write_card(out)
