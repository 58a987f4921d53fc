"""Process reward model: one score per reasoning step, in our token-classification format or Math-Shepherd / Qwen's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ponder.core.aggregate import check_aggregation
from ponder.core.reasoning import THINK_TAGS
from ponder.verifiers.base import Problem, problem_messages, problem_text
from ponder.verifiers.formats import prm_features, render_prompt
from ponder.verifiers.hf import (
    DEFAULT_THREADS,
    BatchedStepVerifier,
    MicroBatcher,
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

FORMATS = ("token_classification", "step_tag", "qwen")
_AUTO_CLASS = {
    "token_classification": "AutoModelForTokenClassification",
    "step_tag": "AutoModelForCausalLM",
    "qwen": "AutoModelForTokenClassification",
}
# Per-format defaults; the folder's ponder.json overrides any of them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "token_classification": {"step_separator": "\n", "think_tags": list(THINK_TAGS)},
    "step_tag": {"step_separator": "\n", "step_tag": " ки", "good_token": "+", "bad_token": "-"},
    "qwen": {"step_separator": "\n\n", "step_tag": "<extra_0>", "system": None},
}


def token_positions(offsets: Sequence[Sequence[int]], char_ends: Sequence[int]) -> list[int]:
    """For each character index, the index of the token that covers it (offsets from a fast tokenizer)."""
    positions, t = [], 0
    for char in char_ends:
        while t < len(offsets) and offsets[t][1] <= char:
            t += 1
        positions.append(min(t, len(offsets) - 1))
    return positions


class ProcessRewardModel(BatchedStepVerifier):
    """A PRM loaded from a folder; ``format`` comes from ``ponder.json`` unless given.

    Formats:
    - ``token_classification`` (ours, :func:`ponder.verifiers.formats.prm_features`): the step score is read at the
      token ending each step's separator: ``sigmoid(logit)`` with one label, ``softmax[1]`` with two.
    - ``step_tag`` (Math-Shepherd): a causal LM reads ``prompt + step1 + TAG + SEP + step2 + TAG ...``; the step
      score is ``P(good)`` from the softmax over the good/bad tokens' logits at each tag.
    - ``qwen`` (Qwen2.5-Math-PRM): a two-label token classifier over the chat with assistant turn
      ``step1<extra_0>step2<extra_0>``; the step score is ``softmax[1]`` at each tag.

    ``score()`` splits each answer into steps (:func:`ponder.verifiers.base.split_steps`: the reasoning lines, or the
    visible content's lines for an answer that does not think, so a bare answer is scored as one step) and
    aggregates their scores (``aggregation``, default ``min``); an empty answer has no steps and scores 0.0.
    Inputs longer than the model's context are cut from the left; steps that fall off are read at the first token.
    """

    kind = "prm"

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str = "prm",
        format: str | None = None,
        aggregation: str = "min",
        device: str | None = None,
        max_batch_tokens: int = 16384,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        import torch

        self.name = name
        self.folder = check_model_folder(folder)
        self.source = str(self.folder)
        sidecar = read_sidecar(self.folder)
        if sidecar.get("kind", "prm") != "prm":
            raise VerifierLoadError(f"{self.folder}: ponder.json says kind {sidecar['kind']!r}, not a PRM")
        self.format = format or sidecar.get("format") or "token_classification"
        if self.format not in FORMATS:
            raise VerifierLoadError(f"{self.folder}: unknown PRM format {self.format!r}; valid: {', '.join(FORMATS)}")
        self.settings = {**_DEFAULTS[self.format], **{k: v for k, v in sidecar.items() if v is not None}}
        self.separator: str = self.settings["step_separator"]
        self.think_tags: tuple[str, str] = tuple(self.settings.get("think_tags") or THINK_TAGS)  # type: ignore[assignment]
        self.aggregation = check_aggregation(aggregation)
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(self.folder)
        self.model = load_model(self.folder, _AUTO_CLASS[self.format], self.device)
        self.max_len = model_max_len(self.model, self.tokenizer)
        self.max_batch_tokens = max_batch_tokens
        self._read = self._reader()
        self._torch = torch
        self._batcher = MicroBatcher(self._forward, name=f"prm-{name}", threads=threads)

    def _reader(self) -> Any:
        """The function turning one row of logits (seq, labels) at the step positions into step scores."""
        labels = int(getattr(self.model.config, "num_labels", 0))
        if self.format == "step_tag":
            good, bad = (self._single_token(self.settings[k]) for k in ("good_token", "bad_token"))
            return lambda logits: logits[:, [good, bad]].softmax(-1)[:, 0]
        if self.format == "qwen" and labels != 2:
            raise VerifierLoadError(f"{self.folder}: the qwen PRM format needs 2 labels, this head has {labels}")
        if labels == 1:
            return lambda logits: logits[:, 0].sigmoid()
        if labels == 2:
            return lambda logits: logits.softmax(-1)[:, 1]
        raise VerifierLoadError(
            f"{self.folder}: a token-classification PRM needs 1 or 2 labels, this head has {labels}"
        )

    def _single_token(self, text: str) -> int:
        """The id of ``text`` as the model would emit it (its last token, as Math-Shepherd's reference code does)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids or ids[-1] == self.tokenizer.unk_token_id:
            raise VerifierLoadError(f"{self.folder}: the tokenizer has no token for {text!r}")
        return ids[-1]

    def features(self, problem: Problem, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Input ids and, per step, the token position its score is read at."""
        messages = problem_messages(problem)
        if self.format == "token_classification":
            opener = self.think_tags[0]
            return prm_features(self.tokenizer, render_prompt(self.tokenizer, messages), steps, self.separator, opener)
        tag = self.settings["step_tag"]
        if self.format == "step_tag":
            prefix = (
                render_prompt(self.tokenizer, messages) if self.tokenizer.chat_template else problem_text(problem) + " "
            )
            body = self.separator.join(step + tag for step in steps)
            text, start, special = prefix + body, len(prefix), True
        else:
            if self.settings.get("system") and messages[0].get("role") != "system":
                messages = [{"role": "system", "content": self.settings["system"]}, *messages]
            body = "".join(step + tag for step in steps)
            text = self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": body}], tokenize=False, add_generation_prompt=False
            )
            start, special = text.rfind(body), False
            if start < 0:
                raise VerifierLoadError(
                    f"{self.folder}: the chat template changes the assistant turn; cannot find steps"
                )
        ends, cursor = [], start
        for step in steps:
            cursor += len(step) + len(tag)
            ends.append(cursor - 1)
            cursor += len(self.separator) if self.format == "step_tag" else 0
        enc = self.tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        return list(enc["input_ids"]), token_positions(enc["offset_mapping"], ends)

    def _forward(self, items: list[tuple[Problem, Sequence[str]]]) -> list[list[float]]:
        torch = self._torch
        rows, positions = [], []
        for problem, steps in items:
            ids, pos = self.features(problem, steps)
            cut = max(0, len(ids) - self.max_len)
            rows.append(ids[cut:])
            positions.append([max(0, p - cut) for p in pos])
        out: list[list[float]] = [[] for _ in items]
        todo = [i for i, pos in enumerate(positions) if pos]
        with torch.inference_mode():
            for chunk in length_chunks([len(rows[i]) for i in todo], self.max_batch_tokens):
                chunk = [todo[c] for c in chunk]
                ids, mask = pad_batch([rows[i] for i in chunk], self.tokenizer.pad_token_id, self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
                for row, i in enumerate(chunk):
                    out[i] = [float(v) for v in self._read(logits[row, positions[i]]).tolist()]
        return out

    def __repr__(self) -> str:
        return f"ProcessRewardModel(name={self.name!r}, folder={self.source!r}, format={self.format!r})"
