"""Outcome reward model: a sequence-classification head scores the whole completion (a raw logit, higher better)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.verifiers.base import Problem, problem_messages
from ponder.verifiers.formats import number_view, orm_text
from ponder.verifiers.hf import (
    DEFAULT_THREADS,
    BatchedOutcomeVerifier,
    MicroBatcher,
    VerifierLoadError,
    check_model_folder,
    common_prefix_len,
    continue_batch,
    length_chunks,
    load_model,
    load_tokenizer,
    model_max_len,
    pad_batch,
    pick_device,
    read_sidecar,
)


class OutcomeRewardModel(BatchedOutcomeVerifier):
    """``AutoModelForSequenceClassification`` from a folder; input is :func:`ponder.verifiers.formats.orm_text`.

    One label: the score is the raw logit. Two labels (bad, good): the log-odds ``logit[1] - logit[0]``,
    which orders answers exactly as ``softmax[1]`` does. Inputs longer than the model's context keep their end.
    The text is seen in the sidecar's ``number_order`` (``reversed``: every number least significant digit first),
    as it was in training.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str = "orm",
        device: str | None = None,
        max_batch_tokens: int = 16384,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        import torch

        self.name = name
        self.folder = check_model_folder(folder)
        self.source = str(self.folder)
        self.sidecar = read_sidecar(self.folder)
        if self.sidecar.get("kind", "orm") != "orm":
            raise VerifierLoadError(f"{self.folder}: ponder.json says kind {self.sidecar['kind']!r}, not an ORM")
        try:
            self._view = number_view(self.sidecar.get("number_order", "as_written"))
        except ValueError as exc:
            raise VerifierLoadError(f"{self.folder}: {exc}") from None
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(self.folder)
        self.model = load_model(self.folder, "AutoModelForSequenceClassification", self.device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id  # the head pools the last non-pad token
        self.num_labels = int(self.model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise VerifierLoadError(f"{self.folder}: an ORM needs 1 or 2 labels, this head has {self.num_labels}")
        self.max_len = model_max_len(self.model, self.tokenizer)
        self.max_batch_tokens = max_batch_tokens
        self._torch = torch
        self._batcher = MicroBatcher(self.score_batch, name=f"orm-{name}", threads=threads)

    def encode(self, problem: Problem, answer: str) -> list[int]:
        """Token ids of one (problem, answer) pair, left-truncated to the model's context."""
        view = self._view
        messages = [{**m, "content": view(m["content"])} for m in problem_messages(problem)]
        text = orm_text(self.tokenizer, messages, view(answer))
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids[-self.max_len :])

    def score_batch(self, items: Sequence[tuple[Problem, str]]) -> list[float]:
        """Scores of (problem, answer) items, synchronously (what the batcher runs).

        As for the generative PRM, work the answers share is done once: identical answers are scored once, and the
        answers to one question continue one pass over what they all start with (the question, often more).
        """
        rows = [self.encode(problem, answer) for problem, answer in items]
        scores = [0.0] * len(rows)
        first_of: dict[tuple[int, ...], int] = {}
        copies: list[tuple[int, int]] = []
        groups: dict[str, list[int]] = {}
        for i, (row, (problem, _)) in enumerate(zip(rows, items, strict=True)):
            if tuple(row) in first_of:
                copies.append((i, first_of[tuple(row)]))
                continue
            first_of[tuple(row)] = i
            groups.setdefault(json.dumps(problem_messages(problem), sort_keys=True), []).append(i)
        alone: list[int] = []
        with self._torch.inference_mode():
            for members in groups.values():
                if len(members) > 1 and all(len(rows[i]) < self.max_len for i in members):
                    self._score_shared(members, rows, scores)
                else:
                    alone.extend(members)
            for chunk in length_chunks([len(rows[i]) for i in alone], self.max_batch_tokens):
                chunk = [alone[c] for c in chunk]
                ids, mask = pad_batch([rows[i] for i in chunk], self.tokenizer.pad_token_id, self.device)
                self._store(self.model(input_ids=ids, attention_mask=mask).logits, chunk, scores)
        for i, j in copies:
            scores[i] = scores[j]
        return scores

    def _score_shared(self, members: list[int], rows: list[list[int]], scores: list[float]) -> None:
        """Score ``members`` (distinct answers to one question) continuing one pass of their common prefix."""
        mine = [rows[i] for i in members]
        n = min(common_prefix_len(mine), min(len(r) for r in mine) - 1)  # each keeps a token of its own
        head = self.model(input_ids=self._torch.tensor([mine[0][:n]], device=self.device), use_cache=True)
        for chunk in length_chunks([len(r) - n for r in mine], self.max_batch_tokens):
            tails = [mine[c][n:] for c in chunk]
            # the head pools the last non-pad token of what it is given: the tail's own last token
            output, _ = continue_batch(
                self.model, head.past_key_values, n, tails, self.tokenizer.pad_token_id, self.device
            )
            self._store(output.logits, [members[c] for c in chunk], scores)

    def _store(self, logits: Any, which: list[int], scores: list[float]) -> None:
        logits = logits.float()
        values = logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]
        for i, value in zip(which, values.tolist(), strict=True):
            scores[i] = float(value)

    def __repr__(self) -> str:
        return f"OutcomeRewardModel(name={self.name!r}, folder={self.source!r}, device={self.device!r})"
