"""The run both verifier trainers (``rm``, ``prm``) make: data, model, train, save the folder, measure it."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.core.sidecar import SIDECAR
from ponder.training.base_model import with_lora
from ponder.training.common import log_callback, training_run, versions, write_json
from ponder.training.config_args import to_cli_flags
from ponder.training.lora import merged
from ponder.training.rm_config import VerifierArgs
from ponder.training.verifier_common import eval_records, load_verifier, orm_sidecar, prm_sidecar, samples_info

# kind: (the ``ponder train`` subcommand, the model head, the sidecar)
VERIFIERS: dict[str, tuple[str, str, Callable[[VerifierArgs], dict[str, Any]]]] = {
    "orm": ("rm", "sequence", orm_sidecar),
    "prm": ("prm", "token", prm_sidecar),
}

TrainingData = Callable[[], tuple[dict[str, Any], Any]]
"""Reads or samples the training rows: returns the data's description (``training_config.json``'s ``data``, its
``notes`` for the card included) and the rows."""

BuildTrainer = Callable[[Any, dict[str, Any], Any, Any, Path, list], Any]
"""``(rows, data, tokenizer, model, out, callbacks)`` -> the ``transformers.Trainer`` of the run; adds the counts of
what it kept to ``data``."""


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


def train_verifier(cfg: VerifierArgs, kind: str, training_data: TrainingData, build_trainer: BuildTrainer) -> Path:
    """Train a verifier of ``kind`` (``orm`` or ``prm``) into ``cfg.output_dir`` and return the folder.

    The output folder and its log first, then the training rows and the held-out samples, the policy's body with a
    new one-logit head (seeded), the trainer's run, the saved folder (weights, tokenizer, sidecar,
    ``training_config.json``), and last its measurement on the held-out samples, which writes the card.
    """
    import torch
    from transformers import set_seed

    command, head, sidecar = VERIFIERS[kind]
    log = logging.getLogger(f"ponder.train.{command}")
    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, handler):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        timer = Timer()
        data, rows = training_data()
        held_out = eval_records(cfg) if cfg.eval_problems and not cfg.dataset else []
        timer.mark("samples")
        set_seed(cfg.seed)  # before loading: the new head is initialised from it
        tokenizer, model = load_verifier(cfg.base_model or cfg.policy, head)
        model, note = with_lora(model, cfg, head)
        data.setdefault("notes", []).extend([note] if note else [])
        callbacks = [log_callback(out / "logs" / "train.jsonl", handler)]
        trainer = build_trainer(rows, data, tokenizer, model, out, callbacks)
        result = trainer.train()
        timer.mark("train")
        save_verifier(
            out,
            merged(trainer.model),
            tokenizer,
            sidecar(cfg),
            command=f"ponder train {command} " + " ".join(to_cli_flags(cfg)),
            cfg=cfg,
            data=data,
            steps=trainer.state.global_step,
            seconds=timer.seconds(),
            metrics=dict(result.metrics),
        )
        measure_or_card(cfg, kind, out, held_out, timer, log)
        log.info("saved %s (%d steps, %.1f min)", out, trainer.state.global_step, timer.seconds()["total"] / 60)
    return out


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
    trained_parameters: int | None = None,
) -> None:
    """Weights, tokenizer (with its chat template), ``ponder.json`` and ``training_config.json``
    (``trained_parameters``: recorded when fewer than the model's parameters learned, as with a frozen body)."""
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
            **({"trained_parameters": trained_parameters} if trained_parameters is not None else {}),
            "steps": steps,
            "seconds": seconds,
            "threads": torch.get_num_threads(),
            "metrics": metrics,
            "versions": versions(),
        },
    )


def measure_or_card(
    cfg: VerifierArgs, kind: str, out: Path, held_out: list[dict[str, Any]], timer: Timer, log: logging.Logger
) -> None:
    """Measure the saved verifier on the held-out samples (which writes the card), or only write the card."""
    from ponder.training.verifier_metrics import evaluate_into, write_card

    if held_out:
        info = samples_info(cfg, held_out, cfg.eval_split, cfg.eval_problems, cfg.eval_k, cfg.eval_temperature)
        evaluate_into(out, kind, held_out, info, log.info)
        timer.mark("measure")
        update_seconds(out, timer)
    else:
        write_card(out)


def update_seconds(out: Path, timer: Timer) -> None:
    """Record the measuring time in ``training_config.json`` too, and re-render the card with it."""
    from ponder.training.verifier_metrics import write_card

    path = out / "training_config.json"
    config = json.loads(path.read_text())
    config["seconds"] = timer.seconds()
    write_json(path, config)
    write_card(out)
