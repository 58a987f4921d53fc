"""What the verifier trainers (``rm``, ``prm``) share: argument checks, user-data checks, models, samples, sidecars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ponder.tasks import SPLITS, check_levels
from ponder.training.base_model import ensure_chat_template
from ponder.training.common import TrainingInputError, arithmetic_sidecar, check_model_dir
from ponder.training.lora import check_lora
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
    if cfg.qlora:  # the verifier trainers run on the CPU in float32 (config_args.CPU_RUN); 4-bit needs CUDA
        raise TrainingInputError("--qlora is not supported by the verifier trainers (CPU runs); use --lora-r alone")
    check_lora(cfg)
    check_model_dir(cfg.base_model or cfg.policy)
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
    ensure_chat_template(tokenizer)  # a base model's tokenizer may have none; the verifier is saved with it
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


def orm_sidecar(cfg: VerifierArgs) -> dict[str, Any]:
    """``ponder.json`` of an outcome reward model, with the number order it reads (``ponder train rm``)."""
    return {**ORM_SIDECAR, "number_order": getattr(cfg, "number_order", "as_written"), **arithmetic_sidecar()}


def prm_sidecar(cfg: VerifierArgs) -> dict[str, Any]:
    """``ponder.json`` of a process reward model (score: the sigmoid of the logit at each step's end)."""
    shared = arithmetic_sidecar()
    return {**PRM_SIDECAR, "step_separator": shared["step_separator"], "score": "sigmoid", **shared}


def read_user_table(path: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """``load_table`` with the row count logged."""
    from ponder.training.common import load_table

    rows = load_table(path, required)
    log.info("read %d rows from %s", len(rows), path)
    return rows
