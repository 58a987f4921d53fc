"""Token-pooled ORM: a learned head over a causal LM's reading of each answer token, pooled by a soft minimum."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.verifiers.base import Problem, problem_messages
from ponder.verifiers.formats import number_view, render_prompt
from ponder.verifiers.hf import (
    DEFAULT_THREADS,
    QUESTION_CACHE_BYTES,
    TREE_ATTENTION,
    BatchedOutcomeVerifier,
    MicroBatcher,
    TreeReader,
    VerifierLoadError,
    check_model_folder,
    load_model,
    load_tokenizer,
    model_max_len,
    pick_device,
    read_sidecar,
)

TOKEN_MIN = "token_min"
"""``ponder.json`` ``format`` of this ORM."""

FEATURES = ("logprob", "best_logprob", "entropy", "step_logprob")
"""What the head reads at each answer token, all from the LM's prediction of that token: its log-probability, the
log-probability of the LM's own first choice, the entropy of the prediction, and the log-probability of the step so
far (the tokens since the last step separator, this one included)."""


EMPTY_SCORE = -1e9
"""The score of an empty answer, which has no token to vouch for it: below any real one, and finite for JSON."""


@dataclass(frozen=True)
class PoolingHead:
    """``score = softmin_tau(w . f_t + b)`` over the answer's tokens ``t``: the weakest token decides, smoothly."""

    weight: tuple[float, ...]
    bias: float
    temperature: float

    def __post_init__(self) -> None:
        if len(self.weight) != len(FEATURES) or not all(math.isfinite(w) for w in (*self.weight, self.bias)):
            raise ValueError(f"a pooling head has {len(FEATURES)} finite weights ({', '.join(FEATURES)}) and a bias")
        if not self.temperature > 0:
            raise ValueError(f"the pooling temperature must be positive, got {self.temperature}")

    @classmethod
    def from_sidecar(cls, head: Any) -> PoolingHead:
        if not isinstance(head, dict) or head.get("features") != list(FEATURES):
            raise ValueError(f"`head` must be {{features: {list(FEATURES)}, weight, bias, temperature}}")
        return cls(tuple(float(w) for w in head["weight"]), float(head["bias"]), float(head["temperature"]))

    def to_sidecar(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weight": list(self.weight),
            "bias": self.bias,
            "temperature": self.temperature,
        }

    def pool(self, features: Any, mask: Any = None) -> Any:
        """Scores of ``features`` (torch, ``[..., tokens, len(FEATURES)]``); ``mask`` (``[..., tokens]``) is
        false at padding."""
        import torch

        per_token = features @ torch.tensor(self.weight, dtype=features.dtype) + self.bias
        return softmin(per_token, self.temperature, mask)


def softmin(values: Any, temperature: float, mask: Any = None) -> Any:
    """``-tau * logsumexp(-v / tau)`` over the last axis, masked positions left out (torch; differentiable)."""
    import torch

    if mask is not None:
        values = values.masked_fill(~mask, math.inf)
    return -temperature * torch.logsumexp(-values / temperature, dim=-1)


class SurprisalReader:
    """A causal LM reading (question, answer) pairs: per answer token, the :data:`FEATURES` of its prediction.

    The text is seen in ``number_order`` (``reversed``: every number least significant digit first), as by the
    generative PRM it is usually built on. Answers to one question continue one pass over what they share.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        number_order: str,
        device: str | None = None,
        max_batch_tokens: int = 16384,
        question_cache_bytes: int = QUESTION_CACHE_BYTES,
    ) -> None:
        import torch

        self.folder = check_model_folder(folder)
        self._view = number_view(number_order)
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(self.folder)
        self.model = load_model(self.folder, "AutoModelForCausalLM", self.device, attn_implementation=TREE_ATTENTION)
        self.max_len = model_max_len(self.model, self.tokenizer)
        self.max_batch_tokens = max_batch_tokens
        self._torch = torch
        self.tree_reader = TreeReader(self.model, self.device, question_cache_bytes)
        vocab = list(self.tokenizer.get_vocab().values())
        # a token that holds a newline ends a step (the policy writes one step per line); one batched decode, as a
        # real model's vocabulary has 100k+ entries
        texts = self.tokenizer.batch_decode([[i] for i in vocab])
        self._ends_step = {i for i, text in zip(vocab, texts, strict=True) if "\n" in text}

    def prompt(self, problem: Problem) -> str:
        """The question as the reader's language model sees it: chat template applied, numbers in its view."""
        view = self._view
        return render_prompt(self.tokenizer, [{**m, "content": view(m["content"])} for m in problem_messages(problem)])

    def encode(self, problem: Problem, answer: str, prompt: str | None = None) -> tuple[list[int], int]:
        """Token ids of the pair, left-truncated to the context, and the index of the answer's first token.

        ``prompt`` is :meth:`prompt` of ``problem`` when the caller has it already (the answers to one question).
        """
        prompt = self.prompt(problem) if prompt is None else prompt
        enc = self.tokenizer(prompt + self._view(answer), add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        start = next((i for i, (a, _) in enumerate(enc["offset_mapping"]) if a >= len(prompt)), len(ids))
        cut = max(0, len(ids) - self.max_len)
        return ids[cut:], max(1, start - cut)  # token 0 has no prediction

    def read(self, items: Sequence[tuple[Problem, str]]) -> list[Any]:
        """One ``[answer tokens, len(FEATURES)]`` float tensor per item (0 rows for an empty answer).

        A question's answers go through the model as one prefix tree in one pass, after the question's kept KV cache
        or with the question (:class:`TreeReader`).
        """
        prompts: dict[str, str] = {}
        rows: list[tuple[list[int], int]] = []
        for problem, answer in items:  # the question rendered once per question, not once per answer
            key = json.dumps(problem_messages(problem), sort_keys=True)
            if key not in prompts:
                prompts[key] = self.prompt(problem)
            rows.append(self.encode(problem, answer, prompts[key]))
        out: list[Any] = [None] * len(rows)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ids, start) in enumerate(rows):
            if start >= len(ids):
                out[i] = self._torch.zeros(0, len(FEATURES))
            else:  # an input cut from the left to fit starts with what is left of its question: still a prefix
                groups.setdefault(tuple(ids[:start]), []).append(i)
        with self._torch.inference_mode():
            for question, members in groups.items():
                self._read_group(question, members, rows, out)
        return out

    def _read_group(
        self, question: tuple[int, ...], members: list[int], rows: list[tuple[list[int], int]], out: list[Any]
    ) -> None:
        """Read ``members`` (answers to ``question``) in one pass over their prefix tree."""
        q = len(question)
        answers = [rows[i][0][q:] for i in members]
        for c, logits in enumerate(self.tree_reader.read(question, answers)):  # logits[k] predicts token q + k
            out[members[c]] = self._features(logits, rows[members[c]][0], q)

    def _features(self, logits: Any, ids: list[int], start: int) -> Any:
        """:data:`FEATURES` of tokens ``start..`` of ``ids``; ``logits[k]`` is the prediction of token ``start + k``."""
        torch = self._torch
        if start >= len(ids):
            return torch.zeros(0, len(FEATURES))
        logprobs = logits.float().log_softmax(-1)
        targets = torch.tensor(ids[start:], device=logprobs.device)
        taken = logprobs.gather(-1, targets[:, None])[:, 0]
        entropy = -(logprobs.exp() * logprobs).sum(-1)
        step, total = [], 0.0
        for token, lp in zip(ids[start:], taken.tolist(), strict=True):
            total += lp
            step.append(total)
            if token in self._ends_step:
                total = 0.0
        return torch.stack(
            [taken, logprobs.max(-1).values, entropy, torch.tensor(step, device=logprobs.device)], dim=-1
        ).cpu()


class TokenPooledORM(BatchedOutcomeVerifier):
    """The ORM ``ponder train rm --head token-min`` writes: :class:`SurprisalReader` features, a :class:`PoolingHead`.

    Trained on outcome labels only (Bradley-Terry on right vs wrong answers of the same question), over a frozen
    causal LM that reads the question and the answer as text: the head learns which of the LM's surprises decide an
    answer's fate, and the soft minimum lets one wrong digit anywhere sink it.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str = "orm",
        device: str | None = None,
        max_batch_tokens: int = 16384,
        threads: int = DEFAULT_THREADS,
        question_cache_bytes: int = QUESTION_CACHE_BYTES,
    ) -> None:
        self.name = name
        self.folder = check_model_folder(folder)
        self.source = str(self.folder)
        self.sidecar = read_sidecar(self.folder)
        if self.sidecar.get("kind") != "orm" or self.sidecar.get("format") != TOKEN_MIN:
            raise VerifierLoadError(f"{self.folder}: ponder.json does not describe a {TOKEN_MIN} ORM")
        try:
            self.head = PoolingHead.from_sidecar(self.sidecar.get("head"))
            self.reader = SurprisalReader(
                self.folder,
                number_order=self.sidecar.get("number_order", "as_written"),
                device=device,
                max_batch_tokens=max_batch_tokens,
                question_cache_bytes=question_cache_bytes,
            )
        except ValueError as exc:
            raise VerifierLoadError(f"{self.folder}: {exc}") from None
        self._batcher = MicroBatcher(self.score_batch, name=f"orm-{name}", threads=threads)

    def score_batch(self, items: Sequence[tuple[Problem, str]]) -> list[float]:
        """Scores of (problem, answer) items, synchronously (what the batcher runs); identical items read once."""
        first: dict[str, int] = {}
        distinct: list[tuple[Problem, str]] = []
        where = []
        for problem, answer in items:
            key = json.dumps([problem_messages(problem), answer], sort_keys=True)
            if key not in first:
                first[key] = len(distinct)
                distinct.append((problem, answer))
            where.append(first[key])
        scores = [self._pool(f) for f in self.reader.read(distinct)]
        return [scores[i] for i in where]

    def _pool(self, features: Any) -> float:
        return float(self.head.pool(features)) if len(features) else EMPTY_SCORE

    def __repr__(self) -> str:
        return f"TokenPooledORM(name={self.name!r}, folder={self.source!r}, device={self.reader.device!r})"


def open_orm(
    folder: str | Path,
    *,
    name: str = "orm",
    device: str | None = None,
    threads: int = DEFAULT_THREADS,
    question_cache_bytes: int | None = None,
) -> Any:
    """The outcome model a folder holds: a :class:`TokenPooledORM`, or a sequence-classification ORM.

    ``question_cache_bytes`` (default :data:`QUESTION_CACHE_BYTES`) bounds the token-pooled ORM's kept questions; a
    sequence-classification ORM keeps none, so it refuses the setting.
    """
    if read_sidecar(check_model_folder(folder)).get("format") == TOKEN_MIN:
        cache = QUESTION_CACHE_BYTES if question_cache_bytes is None else question_cache_bytes
        return TokenPooledORM(folder, name=name, device=device, threads=threads, question_cache_bytes=cache)
    if question_cache_bytes is not None:
        raise VerifierLoadError(f"{folder}: a sequence-classification ORM keeps no questions; cache_mb does not apply")
    from ponder.verifiers.orm import OutcomeRewardModel

    return OutcomeRewardModel(folder, name=name, device=device, threads=threads)
