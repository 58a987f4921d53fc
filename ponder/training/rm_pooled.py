"""``ponder train rm --head token-min``: fit a token-pooled ORM's head on outcome pairs over a frozen causal LM."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.training.base_model import ensure_chat_template
from ponder.training.common import TrainingInputError, training_run
from ponder.training.config_args import to_cli_flags
from ponder.training.rm_config import RMArgs
from ponder.training.verifier_common import arithmetic_sidecar, eval_records
from ponder.training.verifier_run import Timer, measure_or_card, save_verifier
from ponder.verifiers.hf import VerifierLoadError
from ponder.verifiers.orm_pooled import FEATURES, TOKEN_MIN, PoolingHead, SurprisalReader, softmin

log = logging.getLogger("ponder.train.rm")

READ_BATCH = 256
"""Answers read per pass of the LM while preparing the features."""


def train_pooled_rm(cfg: RMArgs, training_data: Callable[[], tuple[dict[str, Any], list]]) -> Path:
    """Read every training answer once with the frozen LM, fit the head on the pairs, save and measure the folder."""
    import torch

    with training_run(cfg.output_dir, overwrite=cfg.overwrite) as (out, _):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        timer = Timer()
        data, pairs = training_data()
        held_out = eval_records(cfg) if cfg.eval_problems and not cfg.dataset else []
        timer.mark("samples")
        try:
            reader = SurprisalReader(cfg.base_model, number_order=cfg.number_order, device="cpu")
        except VerifierLoadError as exc:
            raise TrainingInputError(f"--base-model: {exc}") from None
        ensure_chat_template(reader.tokenizer)  # a base model's tokenizer may have none; the ORM is saved with it
        features, index = read_answers(reader, pairs)
        chosen, rejected = pair_indices(pairs, index, features, cfg.max_length)
        if not chosen:
            raise TrainingInputError(
                f"no training pair with both answers non-empty and within --max-length {cfg.max_length} tokens"
            )
        data["train"]["pairs"] = len(chosen)
        data["notes"].append(
            f"Bradley-Terry pairs: {len(chosen)} (chosen = a correct answer, rejected = a wrong one of the same "
            f"problem), {len(features)} distinct answers read once by the frozen LM ({cfg.base_model}); batch = pairs."
        )
        timer.mark("read")
        head, history, steps = fit_head(cfg, features, chosen, rejected)
        timer.mark("train")
        with (out / "logs" / "train.jsonl").open("w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in history)
        sidecar = {
            "kind": "orm",
            "format": TOKEN_MIN,
            "number_order": cfg.number_order,
            "head": head.to_sidecar(),
            **arithmetic_sidecar(),
        }
        save_verifier(
            out,
            reader.model,
            reader.tokenizer,
            sidecar,
            command="ponder train rm " + " ".join(to_cli_flags(cfg)),
            cfg=cfg,
            data=data,
            steps=steps,
            seconds=timer.seconds(),
            metrics={"train_loss": history[-1]["loss"], "train_pair_accuracy": history[-1]["pair_accuracy"]},
            trained_parameters=len(FEATURES) + 1,  # the LM is frozen: only the head learns
        )
        measure_or_card(cfg, "orm", out, held_out, timer, log)
        log.info("saved %s (%d head steps, %.1f min)", out, len(history), timer.seconds()["total"] / 60)
    return out


def read_answers(reader: SurprisalReader, pairs: list) -> tuple[list[Any], dict[tuple[str, str], int]]:
    """Features of every distinct (question, answer) of the pairs, answers to one question read together."""
    index: dict[tuple[str, str], int] = {}
    items = []
    for messages, *answers in pairs:
        for answer in answers:
            key = (json.dumps(messages, sort_keys=True), answer)
            if key not in index:
                index[key] = len(items)
                items.append((messages, answer))
    features: list[Any] = []
    for start in range(0, len(items), READ_BATCH):
        features += reader.read(items[start : start + READ_BATCH])
        log.info("read %d / %d answers", len(features), len(items))
    return features, index


def pair_indices(
    pairs: list, index: dict[tuple[str, str], int], features: list[Any], max_length: int
) -> tuple[list[int], list[int]]:
    """(chosen, rejected) feature indices of the pairs whose answers are both non-empty and not too long."""
    chosen, rejected = [], []
    for messages, good, bad in pairs:
        key = json.dumps(messages, sort_keys=True)
        i, j = index[(key, good)], index[(key, bad)]
        if all(0 < len(features[k]) <= max_length for k in (i, j)):
            chosen.append(i)
            rejected.append(j)
    return chosen, rejected


def fit_head(
    cfg: RMArgs, features: list[Any], chosen: list[int], rejected: list[int]
) -> tuple[PoolingHead, list[dict[str, Any]], int]:
    """AdamW on ``-log sigmoid(s_chosen - s_rejected)``, the head starting at zero (every answer scores alike), with
    the learning-rate schedule, warmup and weight decay of the flags."""
    import torch
    from transformers import get_scheduler

    width = max(len(f) for f in features)
    padded = torch.zeros(len(features), width, len(FEATURES))
    mask = torch.zeros(len(features), width, dtype=torch.bool)
    for k, f in enumerate(features):
        padded[k, : len(f)] = f
        mask[k, : len(f)] = True
    weight = torch.zeros(len(FEATURES), requires_grad=True)
    bias = torch.zeros((), requires_grad=True)  # cancels in every pair; kept so scores read as log-odds-like values
    order = list(range(len(chosen)))
    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(order) / cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW([weight, bias], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total), num_training_steps=total
    )
    history: list[dict[str, Any]] = []
    losses, right = [], []
    for step in range(total):
        if step % steps_per_epoch == 0:
            rng.shuffle(order)
        at = (step % steps_per_epoch) * cfg.batch_size
        batch = order[at : at + cfg.batch_size]
        good = torch.tensor([chosen[b] for b in batch])
        bad = torch.tensor([rejected[b] for b in batch])

        def scores(which: Any) -> Any:
            return softmin(padded[which] @ weight + bias, cfg.pool_temperature, mask[which])

        margin = scores(good) - scores(bad)
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        right.append(float((margin > 0).float().mean()))
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == total:
            row = {
                "step": step + 1,
                "epoch": round((step + 1) / steps_per_epoch, 3),
                "loss": round(sum(losses) / len(losses), 5),
                "pair_accuracy": round(sum(right) / len(right), 4),
            }
            history.append(row)
            log.info("head %s", row)
            losses, right = [], []
    head = PoolingHead(tuple(float(w) for w in weight.detach()), float(bias.detach()), cfg.pool_temperature)
    return head, history, total
