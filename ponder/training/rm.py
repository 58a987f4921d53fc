"""``ponder train rm``: an outcome reward model, Bradley-Terry through TRL's ``RewardTrainer`` or Plackett-Luce."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError
from ponder.training.config_args import training_arguments
from ponder.training.pair_datasets import read_pairs
from ponder.training.rm_config import RMArgs
from ponder.training.verifier_common import (
    check_completion,
    check_prompt,
    check_verifier_args,
    read_user_table,
    samples_info,
    train_records,
)
from ponder.training.verifier_run import train_verifier

log = logging.getLogger("ponder.train.rm")


# ------------------------------------------------------------------------------------------------ the PL loss


def plackett_luce_loss(scores: Any, ranks: Any) -> Any:
    """Negative log-likelihood of the ranking under Plackett-Luce: ``sum_i logsumexp(s_j : r_j >= r_i) - s_i``.

    ``ranks``: lower is better. Without ties this is ``-sum_i log softmax(s)_i`` over the items not yet placed.
    Tied items share a place: each one's denominator holds every item not ranked strictly above it (Breslow's
    handling of ties), so no arbitrary order is imposed among them; the last place contributes nothing.
    """
    import torch

    remaining = ranks.unsqueeze(0) >= ranks.unsqueeze(1)  # [i, j]: j is still in the pool when i is placed
    pool = scores.unsqueeze(0).expand(len(scores), -1).masked_fill(~remaining, float("-inf"))
    return (torch.logsumexp(pool, dim=1) - scores).sum()


# ------------------------------------------------------------------------------------------------ data


def _tokenize(cfg: RMArgs, tokenizer: Any, messages: list[dict], completion: str) -> list[int]:
    """Token ids of one (prompt, completion) exactly as the served ORM reads them, in its number order."""
    from ponder.verifiers.formats import number_view, orm_text

    view = number_view(cfg.number_order)
    messages = [{**m, "content": view(m["content"])} for m in messages]
    return tokenizer(orm_text(tokenizer, messages, view(completion)), add_special_tokens=False)["input_ids"]


def _by_prompt(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The samples of each problem, duplicates (same completion text) dropped."""
    groups: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        groups[(r["split"], r["seed"])].setdefault(r["completion"], r)
    return [list(g.values()) for g in groups.values()]


def sample_rank(record: dict[str, Any]) -> tuple[int, int]:
    """Sort key of a policy sample, lower is better: correct answers first; among wrong ones, more leading good
    steps (exact labels) first. Samples with equal keys stay tied (see ``plackett_luce_loss``)."""
    if record["correct"]:
        return (0, 0)
    good = next((i for i, ok in enumerate(record["labels"]) if not ok), len(record["labels"]))
    return (1, -good)


def pairs_from_samples(records: list[dict[str, Any]], max_pairs: int, seed: int) -> list[tuple[list[dict], str, str]]:
    """(messages, chosen = a correct sample, rejected = a wrong one) of the same problem, at most ``max_pairs`` each."""
    rng = random.Random(seed)
    out = []
    for group in _by_prompt(records):
        good = [r for r in group if r["correct"]]
        bad = [r for r in group if not r["correct"]]
        pairs = [(g, b) for g in good for b in bad]
        rng.shuffle(pairs)
        out += [(g["messages"], g["completion"], b["completion"]) for g, b in pairs[:max_pairs]]
    return out


def lists_from_samples(
    records: list[dict[str, Any]], max_size: int, seed: int
) -> list[tuple[list[dict], list[str], list[int]]]:
    """(messages, completions, ranks) per problem with at least two distinct ranks; ranks are dense, 0 = best.

    Lists longer than ``max_size`` keep a seeded subset that takes from every rank in turn, so a short list still
    spans the best and the worst samples.
    """
    rng = random.Random(seed)
    out = []
    for group in _by_prompt(records):
        keys = sorted({sample_rank(r) for r in group})
        if len(keys) < 2:
            continue
        buckets = [[r for r in group if sample_rank(r) == key] for key in keys]
        for b in buckets:
            rng.shuffle(b)
        chosen: list[dict[str, Any]] = []
        while len(chosen) < min(max_size, len(group)):
            for b in buckets:
                if b and len(chosen) < max_size:
                    chosen.append(b.pop())
        dense = {key: i for i, key in enumerate(sorted({sample_rank(r) for r in chosen}))}
        out.append((group[0]["messages"], [r["completion"] for r in chosen], [dense[sample_rank(r)] for r in chosen]))
    return out


def hard_negative_lists(
    records: list[dict[str, Any]], per_trace: int, seed: int
) -> list[tuple[list[dict], list[str], list[int]]]:
    """(messages, [gold, corrupted...], ranks) per problem: the gold trace ranks 0, a corruption ranks by how many
    leading steps it keeps right (the later its first mistake, the better), as ``sample_rank`` orders policy samples."""
    from ponder.tasks import STEP_SEPARATOR, THINK_CLOSE, THINK_OPEN
    from ponder.training.prm_negatives import hard_negative_rows

    def render(steps: list[str]) -> str:
        answer = steps[-1].split("=")[-1]
        return THINK_OPEN + "".join(s + STEP_SEPARATOR for s in steps) + THINK_CLOSE + answer

    by_problem: dict[str, tuple[list[dict], list[tuple[int, str]]]] = {}
    for messages, steps, targets in hard_negative_rows(records, per_trace, seed):
        good = next((i for i, t in enumerate(targets) if t < 0.5), len(targets))
        entry = by_problem.setdefault(messages[-1]["content"], (messages, []))
        entry[1].append((0 if good == len(targets) else 1 + len(targets) - good, render(steps)))
    out = []
    for messages, ranked in by_problem.values():
        if len(ranked) < 2:
            continue
        dense = {key: i for i, key in enumerate(sorted({k for k, _ in ranked}))}
        out.append((messages, [text for _, text in ranked], [dense[k] for k, _ in ranked]))
    return out


def pairs_from_table(path: str) -> list[tuple[list[dict], str, str]]:
    """Validated (messages, chosen, rejected) rows of a user file, prompt explicit or implicit (``pair_datasets``)."""
    return read_pairs(path)


def lists_from_table(path: str) -> list[tuple[list[dict], list[str], list[int]]]:
    """Validated (messages, completions, ranks) rows of a user file; rows whose ranks are all equal are dropped."""
    rows = read_user_table(path, ("prompt", "completions", "ranks"))
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        messages = check_prompt(row["prompt"], where)
        completions, ranks = row["completions"], row["ranks"]
        if not isinstance(completions, list) or len(completions) < 2:
            raise TrainingInputError(f"{where}: `completions` must be a list of at least 2 assistant texts")
        texts = [check_completion(c, where, "completions") for c in completions]
        if not isinstance(ranks, list) or len(ranks) != len(texts):
            raise TrainingInputError(
                f"{where}: `ranks` must be a list with one integer per completion ({len(texts)}), got {ranks!r:.60}"
            )
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in ranks):
            raise TrainingInputError(f"{where}: `ranks` must be non-negative integers (0 = best), got {ranks!r:.60}")
        if len(set(ranks)) > 1:
            out.append((messages, texts, list(ranks)))
    if not out:
        raise TrainingInputError(f"{path}: every row ranks all its completions equally; there is nothing to learn")
    return out


# ------------------------------------------------------------------------------------------------ PL trainer


def _pl_trainer_class() -> type:
    """A ``transformers.Trainer`` whose loss is Plackett-Luce over each prompt's list (imported lazily)."""
    import torch
    from transformers import Trainer

    class PLTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
            ranks, group = inputs.pop("ranks"), inputs.pop("group")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            scores = outputs.logits.squeeze(-1)
            n = int(group.max()) + 1
            loss = torch.stack([plackett_luce_loss(scores[group == g], ranks[group == g]) for g in range(n)]).mean()
            return (loss, outputs) if return_outputs else loss

    return PLTrainer


def pl_collator(pad_token_id: int) -> Any:
    """Flatten a batch of lists into one padded batch; ``group`` says which list each row came from."""
    import torch

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [ids for ex in examples for ids in ex["ids"]]
        width = max(len(r) for r in rows)
        return {
            "input_ids": torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "ranks": torch.tensor([x for ex in examples for x in ex["ranks"]]),
            "group": torch.tensor([g for g, ex in enumerate(examples) for _ in ex["ids"]]),
        }

    return collate


# ------------------------------------------------------------------------------------------------ train


def check_args(cfg: RMArgs) -> None:
    check_verifier_args(cfg)
    if cfg.max_pairs_per_prompt <= 0 or cfg.max_list_size < 2:
        raise TrainingInputError("--max-pairs-per-prompt must be positive and --max-list-size at least 2")
    if cfg.hard_negatives < 0:
        raise TrainingInputError(f"--hard-negatives must be 0 or more, got {cfg.hard_negatives}")
    if cfg.hard_negatives and cfg.dataset:
        raise TrainingInputError("--hard-negatives corrupts gold traces of policy-sample problems; not with --dataset")
    if cfg.head == "token-min":
        if cfg.loss != "bt" or cfg.lora_r or cfg.qlora:
            raise TrainingInputError(
                "--head token-min trains a pooling head with --loss bt on a frozen body: no --loss pl, no LoRA"
            )
        if not cfg.base_model:
            raise TrainingInputError("--head token-min reads answers with a causal LM: give it as --base-model")
        if not cfg.pool_temperature > 0:
            raise TrainingInputError(f"--pool-temperature must be positive, got {cfg.pool_temperature}")


def train_rm(cfg: RMArgs) -> Path:
    """Check the input, train, save the ORM folder, measure it on held-out samples and write its card."""
    check_args(cfg)
    if cfg.dataset:  # read and check it before touching the output folder
        pairs_from_table(cfg.dataset) if cfg.loss == "bt" else lists_from_table(cfg.dataset)
    if cfg.head == "token-min":
        from ponder.training.rm_pooled import train_pooled_rm

        return train_pooled_rm(cfg, partial(_training_data, cfg))
    return train_verifier(cfg, "orm", partial(_training_data, cfg), partial(_build_trainer, cfg))


def _add_hard_negatives(cfg: RMArgs, records: list[dict[str, Any]], rows: list) -> str:
    """Extend the pairs (or lists) in place with corrupted gold traces; the card's note on them."""
    extra = hard_negative_lists(records, cfg.hard_negatives, cfg.seed)
    if cfg.loss == "bt":
        rows += [(m, texts[0], bad) for m, texts, _ in extra for bad in texts[1:]]
    else:
        rows += extra
    return (
        f"Hard negatives: for {len(extra)} training problems, the gold trace against {cfg.hard_negatives} "
        "corrupted copies (one step with a wrong result, a wrong operand or a skipped term, later steps and "
        "the answer carried forward from it; `ponder.training.prm_negatives`)."
    )


def _training_data(cfg: RMArgs) -> tuple[dict[str, Any], list]:
    """The data description (with the card's notes so far) and the Bradley-Terry pairs or Plackett-Luce lists."""
    if cfg.dataset:
        rows = pairs_from_table(cfg.dataset) if cfg.loss == "bt" else lists_from_table(cfg.dataset)
        return {"train": {"source": cfg.dataset}, "notes": []}, rows
    records = train_records(cfg)
    data = {"train": samples_info(cfg, records, "train", cfg.train_problems, cfg.k, cfg.temperature), "notes": []}
    if cfg.loss == "bt":
        rows = pairs_from_samples(records, cfg.max_pairs_per_prompt, cfg.seed)
    else:
        rows = lists_from_samples(records, cfg.max_list_size, cfg.seed)
    if cfg.hard_negatives:
        data["notes"].append(_add_hard_negatives(cfg, records, rows))
    return data, rows


def _bt_rows(cfg: RMArgs, tokenizer: Any, pairs: list, data: dict[str, Any]) -> dict[str, list]:
    """Tokenized chosen/rejected columns for ``RewardTrainer``; counts and a note into ``data``."""
    rows: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    for messages, chosen, rejected in pairs:
        rows["chosen_ids"].append(_tokenize(cfg, tokenizer, messages, chosen))
        rows["rejected_ids"].append(_tokenize(cfg, tokenizer, messages, rejected))
    data["train"]["pairs"] = len(pairs)
    data["notes"].append(
        f"Bradley-Terry pairs: {len(pairs)} (chosen = a correct sample, rejected = a wrong sample of the same "
        f"problem, distinct completions, at most {cfg.max_pairs_per_prompt} per problem); batch = pairs."
        if not cfg.dataset
        else f"Bradley-Terry pairs: {len(pairs)} (chosen, rejected) rows of the file; batch = pairs."
    )
    if not pairs:
        raise TrainingInputError("no (correct, wrong) pair of the same prompt among the training samples")
    fits = sum(max(len(c), len(r)) <= cfg.max_length for c, r in zip(*rows.values(), strict=True))
    if not fits:  # TRL would drop every pair and fail deep inside the sampler
        raise TrainingInputError(f"every training pair is longer than --max-length {cfg.max_length} tokens")
    return rows


def _pl_examples(cfg: RMArgs, tokenizer: Any, lists: list, data: dict[str, Any]) -> list[dict]:
    """Tokenized lists for the PL trainer, too-long completions dropped; counts and a note into ``data``."""
    examples = []
    for messages, completions, ranks in lists:
        ids = [_tokenize(cfg, tokenizer, messages, c) for c in completions]
        keep = [i for i, x in enumerate(ids) if len(x) <= cfg.max_length]
        if len({ranks[i] for i in keep}) > 1:
            examples.append({"ids": [ids[i] for i in keep], "ranks": [ranks[i] for i in keep]})
    if not examples:
        raise TrainingInputError("no prompt has completions of at least two different ranks to learn from")
    data["train"]["lists"] = len(examples)
    data["train"]["listed_completions"] = sum(len(e["ids"]) for e in examples)
    data["notes"].append(
        f"Plackett-Luce lists: {len(examples)} problems with at least two distinct ranks, "
        f"{data['train']['listed_completions']} distinct completions (at most {cfg.max_list_size} per list); "
        "batch = lists. Rank: correct answers first; wrong ones ordered by how many leading steps are right "
        "(exact step labels); remaining ties share a place (Breslow), they are not broken at random."
        if not cfg.dataset
        else f"Plackett-Luce lists: {len(examples)} rows with at least two distinct ranks; batch = lists."
    )
    return examples


def _build_trainer(
    cfg: RMArgs, rows: list, data: dict[str, Any], tokenizer: Any, model: Any, out: Path, callbacks: list
) -> Any:
    """TRL's ``RewardTrainer`` on the tokenized pairs (``bt``), or the Plackett-Luce trainer on the lists (``pl``)."""
    log.info("ORM (%s): %.2fM parameters", cfg.loss, sum(p.numel() for p in model.parameters()) / 1e6)
    if cfg.loss == "bt":
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        args = training_arguments(
            cfg, out, RewardConfig, max_length=cfg.max_length, disable_dropout=True, gradient_checkpointing=False
        )
        # Pre-tokenized with verifiers.formats.orm_text, exactly as serving does; TRL then adds no EOS of its own.
        return RewardTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(_bt_rows(cfg, tokenizer, rows, data)),
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    return _pl_trainer_class()(
        model=model,
        args=training_arguments(cfg, out, remove_unused_columns=False),
        train_dataset=_pl_examples(cfg, tokenizer, rows, data),
        data_collator=pl_collator(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
