"""Generative PRM: a causal LM that scores each step by the likelihood it gives the step as written."""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path

from ponder.core.aggregate import check_aggregation
from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, problem_messages
from ponder.verifiers.formats import number_view, render_prompt
from ponder.verifiers.hf import (
    DEFAULT_THREADS,
    QUESTION_CACHE_BYTES,
    TREE_ATTENTION,
    BatchedStepVerifier,
    MicroBatcher,
    TreeReader,
    VerifierLoadError,
    check_model_folder,
    length_chunks,
    load_model,
    load_tokenizer,
    model_max_len,
    pad_batch,
    pick_device,
    read_sidecar,
)


class GenerativePRM(BatchedStepVerifier):
    """A step verifier that writes the solution itself and asks how likely each written step is.

    The model is a causal LM trained on gold traces (``ponder train genprm``). It reads the question and the steps
    so far as text, in its own view of the numbers (``number_order``: ``reversed`` writes every number least
    significant digit first, which makes carries local for a small model), and a step's score is the probability
    it gives that step and its separator: near 1 for a step it would write, near 0 for a wrong operand, a skipped
    term, a number copied wrong from the question, or a result off in one digit (Zhang et al. 2024, "Generative
    Verifiers"). ``score()`` aggregates the step scores (``aggregation``, default ``min``).

    With ``scores_answer`` (the default) a finished solution's answer is read too, as one more item: the
    probability of closing the think block after the last step, then the answer as written, then the end of the
    turn. Every written step of a solution that stops a step early is right; what gives it away is that the model
    would write another step rather than close.
    """

    kind = "prm"

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str = "prm",
        aggregation: str = "min",
        device: str | None = None,
        max_batch_tokens: int = 16384,
        threads: int = DEFAULT_THREADS,
        question_cache_bytes: int = QUESTION_CACHE_BYTES,
        scores_answer: bool = True,
    ) -> None:
        import torch

        self.name = name
        self.folder = check_model_folder(folder)
        self.source = str(self.folder)
        sidecar = read_sidecar(self.folder)
        if sidecar.get("kind", "prm") != "prm" or sidecar.get("format", "generative") != "generative":
            raise VerifierLoadError(f"{self.folder}: ponder.json does not describe a generative PRM")
        self.number_order = sidecar.get("number_order", "as_written")
        try:
            self._view = number_view(self.number_order)
        except ValueError as exc:
            raise VerifierLoadError(f"{self.folder}: {exc}") from None
        self.separator: str = sidecar.get("step_separator", "\n")
        self.think_tags: tuple[str, str] = tuple(sidecar.get("think_tags") or THINK_TAGS)  # type: ignore[assignment]
        self.aggregation = check_aggregation(aggregation)
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(self.folder)
        self.scores_answer = scores_answer
        self.turn_end = turn_end(self.tokenizer)
        self.model = load_model(self.folder, "AutoModelForCausalLM", self.device, attn_implementation=TREE_ATTENTION)
        self.max_len = model_max_len(self.model, self.tokenizer)
        self.max_batch_tokens = max_batch_tokens
        self._torch = torch
        self.tree_reader = TreeReader(self.model, self.device, question_cache_bytes)
        self._batcher = MicroBatcher(self.score_batch, name=f"genprm-{name}", threads=threads)

    def _prompt(self, problem: Problem) -> str:
        """The question as the model reads it: chat template, numbers in its view, the think block opened."""
        viewed = [{**m, "content": self._view(m["content"])} for m in problem_messages(problem)]
        return render_prompt(self.tokenizer, viewed) + self.think_tags[0]

    def _piece(self, step: str) -> str:
        """A step as the model reads it: in its view of the numbers, then the separator; the answer item (it opens
        with the think close tag) with the end of the turn instead."""
        close = self.think_tags[1]
        if self.scores_answer and step.startswith(close):
            return close + self._view(step[len(close) :]) + self.turn_end
        return self._view(step) + self.separator

    def features(self, problem: Problem, steps: Sequence[str]) -> tuple[list[int], list[tuple[int, int]]]:
        """Input ids and, per step, the half-open token range [start, end) of the step and its separator."""
        return self.features_of([(problem, steps)])[0]

    def features_of(
        self, items: Sequence[tuple[Problem, Sequence[str]]]
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """:meth:`features` of many items: each question rendered once, every text tokenized in one call."""
        prompts: dict[str, str] = {}
        texts, all_bounds = [], []
        for problem, steps in items:
            key = json.dumps(problem_messages(problem), sort_keys=True)
            if key not in prompts:
                prompts[key] = self._prompt(problem)
            text = prompts[key]
            bounds, cursor = [], len(text)
            for step in steps:
                piece = self._piece(step)
                bounds.append((cursor, cursor + len(piece)))
                cursor += len(piece)
                text += piece
            texts.append(text)
            all_bounds.append(bounds)
        if not texts:
            return []
        distinct = list(dict.fromkeys(texts))  # a request's samples repeat one another; tokenize each text once
        enc = self.tokenizer(distinct, add_special_tokens=False, return_offsets_mapping=True)
        encoded = {
            t: (ids, [a for a, _ in offsets])
            for t, ids, offsets in zip(distinct, enc["input_ids"], enc["offset_mapping"], strict=True)
        }
        out = []
        for text, bounds in zip(texts, all_bounds, strict=True):
            ids, starts = encoded[text]
            out.append((list(ids), [(bisect_left(starts, lo), bisect_left(starts, hi)) for lo, hi in bounds]))
        return out

    def score_batch(self, items: Sequence[tuple[Problem, Sequence[str]]]) -> list[list[float]]:
        """Step scores of (problem, steps) items, synchronously (what the batcher runs).

        Work that candidates share is done once: the distinct answers to a question go through the model as one
        prefix tree in one pass, after the question's kept KV cache or with the question (:class:`TreeReader`).
        """
        feats = self.features_of(items)
        out: list[list[float]] = [[] for _ in items]
        first_of: dict[tuple[int, ...], int] = {}
        copies: list[tuple[int, int]] = []
        groups: dict[tuple[int, ...], list[int]] = {}
        alone: list[int] = []
        for i, (ids, spans) in enumerate(feats):
            if not spans:
                continue
            key = tuple(ids)
            if key in first_of:
                copies.append((i, first_of[key]))
                continue
            first_of[key] = i
            if len(ids) <= self.max_len:
                groups.setdefault(tuple(ids[: spans[0][0]]), []).append(i)
            else:
                alone.append(i)
        with self._torch.inference_mode():
            for question, members in groups.items():
                self._score_group(question, members, feats, out)
            self._score_alone(alone, feats, out)
        for i, j in copies:
            out[i] = list(out[j])
        return out

    def _score_group(self, question: tuple[int, ...], members: list[int], feats: list, out: list[list[float]]) -> None:
        """Score ``members`` (distinct answers to ``question``) in one pass over their prefix tree."""
        torch = self._torch
        q = len(question)
        answers = [feats[i][0][q:] for i in members]
        for c, logits in enumerate(self.tree_reader.read(question, answers)):
            ids = torch.tensor(answers[c], device=self.device)
            taken = logits.float().log_softmax(-1).gather(-1, ids[:, None])[:, 0]  # token q + k at index k
            out[members[c]] = [math.exp(float(taken[a - q : b - q].sum())) for a, b in feats[members[c]][1]]

    def _score_alone(self, todo: list[int], feats: list, out: list[list[float]]) -> None:
        """Score items one padded row each (those longer than the context, cut from the left)."""
        rows, spans = {}, {}
        for i in todo:
            ids, sp = feats[i]
            cut = max(0, len(ids) - self.max_len)
            rows[i] = ids[cut:]
            spans[i] = [(max(1, a - cut), max(1, b - cut)) for a, b in sp]  # token 0 has no prediction
        for chunk in length_chunks([len(rows[i]) for i in todo], self.max_batch_tokens):
            chunk = [todo[c] for c in chunk]
            ids, mask = pad_batch([rows[i] for i in chunk], self.tokenizer.pad_token_id, self.device)
            first = min(spans[i][0][0] for i in chunk) - 1  # no logits for the question, as in _score_group
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=ids.shape[1] - first).logits
            logprobs = logits.float().log_softmax(-1)  # row r predicts token first + 1 + r
            for row, i in enumerate(chunk):
                taken = logprobs[row, :-1].gather(-1, ids[row, first + 1 :, None])[:, 0]
                out[i] = [math.exp(float(taken[a - 1 - first : b - 1 - first].sum())) for a, b in spans[i]]

    def __repr__(self) -> str:
        return (
            f"GenerativePRM(name={self.name!r}, folder={self.source!r}, number_order={self.number_order!r}, "
            f"scores_answer={self.scores_answer!r})"
        )


_MARK = "\x00ANSWER\x00"


def turn_end(tokenizer: object) -> str:
    """What the chat template writes after an assistant turn's text (``<|end|>``; "" when it writes nothing after
    it or has no template), found by rendering a turn around a marker."""
    try:
        text = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}], tokenize=False
        )
    except Exception:  # a tokenizer without a usable chat template
        return ""
    return text.partition(_MARK)[2] if _MARK in text else ""
