"""``ponder train prm``: a process reward model, a token classifier trained with BCE at the end of every step."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError
from ponder.training.config_args import training_arguments
from ponder.training.prm_config import PRMArgs
from ponder.training.step_datasets import SEPARATOR, StepDataset, read_step_dataset
from ponder.training.verifier_common import check_verifier_args, samples_info, train_records
from ponder.training.verifier_run import train_verifier

log = logging.getLogger("ponder.train.prm")


# ------------------------------------------------------------------------------------------------ labels


def targets_of(record: dict[str, Any], labels: str) -> list[float]:
    """Per-step training targets of a policy sample: exact labels, or its Monte Carlo fractions (hard or soft)."""
    if labels == "exact":
        return [float(bool(y)) for y in record["labels"]]
    if "mc" not in record:
        raise TrainingInputError(f"--labels {labels}: the samples have no Monte Carlo rollouts (`mc`)")
    if labels == "mc-hard":
        return [float(f > 0) for f in record["mc"]]
    return [float(f) for f in record["mc"]]


def rows_from_samples(records: list[dict[str, Any]], labels: str) -> list[tuple[list[dict], list[str], list[float]]]:
    """(messages, steps, targets) per distinct solution (same problem and steps counted once); no empty ones."""
    seen: set[tuple] = set()
    out = []
    for r in records:
        key = (r["split"], r["seed"], tuple(r["steps"]))
        if r["steps"] and key not in seen:
            seen.add(key)
            out.append((r["messages"], list(r["steps"]), targets_of(r, labels)))
    return out


# ------------------------------------------------------------------------------------------------ trainer


def _prm_trainer_class() -> type:
    """A ``transformers.Trainer`` with BCE-with-logits at the step positions only (imported lazily)."""
    import torch
    from transformers import Trainer

    class PRMTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
            rows, cols, targets = inputs.pop("step_rows"), inputs.pop("step_cols"), inputs.pop("targets")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            weights = inputs.pop("weights")
            logits = outputs.logits.squeeze(-1)[rows, cols]
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            loss = (losses * weights).sum() / weights.sum()
            return (loss, outputs) if return_outputs else loss

    return PRMTrainer


def prm_collator(pad_token_id: int) -> Any:
    """Right-pad a batch; ``step_rows``/``step_cols`` index the logits of every step, ``targets`` their labels."""
    import torch

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(ex["input_ids"]) for ex in examples)
        return {
            "input_ids": torch.tensor(
                [ex["input_ids"] + [pad_token_id] * (width - len(ex["input_ids"])) for ex in examples]
            ),
            "attention_mask": torch.tensor(
                [[1] * len(ex["input_ids"]) + [0] * (width - len(ex["input_ids"])) for ex in examples]
            ),
            "step_rows": torch.tensor([b for b, ex in enumerate(examples) for _ in ex["positions"]]),
            "step_cols": torch.tensor([p for ex in examples for p in ex["positions"]]),
            "targets": torch.tensor([t for ex in examples for t in ex["targets"]], dtype=torch.float32),
            "weights": torch.tensor(
                [w for ex in examples for w in ex.get("weights") or [1.0] * len(ex["targets"])], dtype=torch.float32
            ),
        }

    return collate


def featurise(tokenizer: Any, rows: list[tuple[list[dict], list[str], list[float]]], max_length: int) -> list[dict]:
    """Token ids and step positions through ``verifiers.formats.prm_features`` (what serving uses); too long dropped."""
    from ponder.verifiers.formats import prm_features, render_prompt

    out = []
    for messages, steps, targets in rows:
        ids, positions = prm_features(tokenizer, render_prompt(tokenizer, messages), steps, SEPARATOR)
        if len(ids) <= max_length:
            out.append({"input_ids": ids, "positions": positions, "targets": targets})
    return out


def balance_by_depth(examples: list[dict]) -> None:
    """Set ``weights`` so that, at every step position, good and bad steps carry half the position's weight each.

    A position with only one class keeps weight 1 (soft targets count as good when >= 0.5).
    """
    counts: dict[tuple[int, bool], int] = {}
    for ex in examples:
        for d, t in enumerate(ex["targets"]):
            counts[d, t >= 0.5] = counts.get((d, t >= 0.5), 0) + 1
    for ex in examples:
        weights = []
        for d, t in enumerate(ex["targets"]):
            good, bad = counts.get((d, True), 0), counts.get((d, False), 0)
            weights.append(1.0 if not good or not bad else (good + bad) / (2 * (good if t >= 0.5 else bad)))
        ex["weights"] = weights


# ------------------------------------------------------------------------------------------------ train


def check_args(cfg: PRMArgs) -> None:
    check_verifier_args(cfg)
    if cfg.labels != "exact" and not cfg.dataset and cfg.mc_rollouts <= 0:
        raise TrainingInputError("--mc-rollouts must be positive for --labels mc-hard / mc-soft")
    if cfg.hard_negatives < 0:
        raise TrainingInputError(f"--hard-negatives must be 0 or more, got {cfg.hard_negatives}")
    if cfg.hard_negatives and cfg.dataset:
        raise TrainingInputError("--hard-negatives corrupts gold traces of policy-sample problems; not with --dataset")


def user_dataset(cfg: PRMArgs) -> StepDataset:
    """The checked rows of ``--dataset`` in its ``--dataset-format`` (``ponder.training.step_datasets``)."""
    return read_step_dataset(cfg.dataset, cfg.dataset_format, step_tag=cfg.step_tag, neutral=cfg.neutral_label)


def train_prm(cfg: PRMArgs) -> Path:
    """Check the input, label, train, save the PRM folder, measure it on held-out samples and write its card."""
    check_args(cfg)
    if cfg.dataset:  # read and check it before touching the output folder
        user_dataset(cfg)
    return train_verifier(cfg, "prm", partial(_training_data, cfg), partial(_build_trainer, cfg))


def _label_notes(cfg: PRMArgs, solutions: int) -> list[str]:
    """The card's notes on the policy-sample solutions and how their steps were labelled."""
    how = {
        "exact": "exact: a step is good when it equals the gold step at its position and every earlier step is "
        "good (`ponder.tasks.step_labels`)",
        "mc-hard": f"mc-hard (Math-Shepherd): a step is good when at least one of {cfg.mc_rollouts} policy "
        "rollouts from just after it ends in the right answer",
        "mc-soft": f"mc-soft (Math-Shepherd): the target is the fraction of {cfg.mc_rollouts} policy rollouts "
        "from just after the step that end in the right answer",
    }[cfg.labels]
    notes = [
        f"{solutions} distinct solutions with at least one step (duplicates of a problem dropped).",
        f"Labels: {how}.",
    ]
    if cfg.labels != "exact":
        notes.append(
            "Rollouts continue the assistant turn `<think>step_1\\n...step_i\\n` through the Ponder engine "
            f"(`Prompt.chat(messages, prefix=...)`, n={cfg.mc_rollouts} per call, temperature {cfg.temperature}); "
            "prefixes shared by several samples are rolled out once."
        )
    return notes


def _add_hard_negatives(cfg: PRMArgs, records: list[dict[str, Any]], rows: list) -> str:
    """Extend ``rows`` in place with corrupted gold traces not already among them; the card's note on them."""
    from ponder.training.prm_negatives import hard_negative_rows

    have = {(msgs[-1]["content"], tuple(steps)) for msgs, steps, _ in rows}
    extra = [
        row
        for row in hard_negative_rows(records, cfg.hard_negatives, cfg.seed)
        if (row[0][-1]["content"], tuple(row[1])) not in have
    ]
    rows += extra
    return (
        f"Hard negatives: for each training problem its gold trace and {cfg.hard_negatives} corrupted copies "
        "(one step with a wrong result, a wrong operand or a skipped term, later steps carried forward from it, "
        f"exact labels; `ponder.training.prm_negatives`): {len(extra)} solutions not already among the samples."
    )


def _training_data(cfg: PRMArgs) -> tuple[dict[str, Any], list[tuple[list[dict], list[str], list[float]]]]:
    """The data description (with the card's notes so far) and the (messages, steps, targets) rows."""
    if cfg.dataset:
        dataset = user_dataset(cfg)
        rows = dataset.rows
        data: dict[str, Any] = {"train": {"source": cfg.dataset, "format": dataset.format}, "notes": dataset.notes}
    else:
        records = train_records(cfg, mc_rollouts=0 if cfg.labels == "exact" else cfg.mc_rollouts)
        rows = rows_from_samples(records, cfg.labels)
        data = {"train": samples_info(cfg, records, "train", cfg.train_problems, cfg.k, cfg.temperature)}
        data["notes"] = _label_notes(cfg, len(rows))
        if cfg.hard_negatives:  # check_args refuses them with --dataset
            data["notes"].append(_add_hard_negatives(cfg, records, rows))
    if not rows:
        raise TrainingInputError("no solution with steps among the training data")
    return data, rows


def _examples(cfg: PRMArgs, tokenizer: Any, rows: list, data: dict[str, Any]) -> list[dict]:
    """Featurised (and optionally depth-balanced) examples; their counts and the last notes into ``data``."""
    examples = featurise(tokenizer, rows, cfg.max_length)
    if not examples:
        raise TrainingInputError(f"every training sequence is longer than --max-length {cfg.max_length}")
    if cfg.balance_depth:
        balance_by_depth(examples)
        data["notes"].append("Step losses weighted so that good and bad steps weigh the same at every step position.")
    targets = [t for ex in examples for t in ex["targets"]]
    data["train"].update(solutions=len(examples), steps=len(targets), mean_target=round(sum(targets) / len(targets), 4))
    data["notes"].append(
        f"{len(targets)} labelled steps, mean target {sum(targets) / len(targets):.3f}; batch = solutions."
    )
    return examples


def _build_trainer(
    cfg: PRMArgs, rows: list, data: dict[str, Any], tokenizer: Any, model: Any, out: Path, callbacks: list
) -> Any:
    """The BCE-at-step-ends trainer on the featurised rows."""
    examples = _examples(cfg, tokenizer, rows, data)
    log.info("PRM (%s labels): %d solutions, %d steps", cfg.labels, len(examples), data["train"]["steps"])
    return _prm_trainer_class()(
        model=model,
        args=training_arguments(cfg, out, remove_unused_columns=False),
        train_dataset=examples,
        data_collator=prm_collator(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
