"""Step-labelled data for ``ponder train prm``: Ponder's rows, TRL's stepwise rows, Math-Shepherd and PRM800K files.

Every format becomes ``(messages, steps, targets)`` rows: the chat up to the assistant turn, the solution's steps,
and one target in [0, 1] per step (1 = the step is right).

- ``steps`` (Ponder's): ``prompt`` (a user message or {role, content} turns), ``steps`` (texts without the line
  break that separates them) and ``labels`` (true/false or probabilities); TRL's stepwise-supervision rows
  (``prompt``, ``completions``, ``labels``) read the same, ``completions`` standing for ``steps``.
- ``math-shepherd`` (the ``peiyi9979/Math-Shepherd`` rows): ``input`` is the question and then the solution, each
  step followed by a step tag (``ки``); ``label`` is the same text with each tag replaced by ``+`` or ``-``. The
  solution starts at ``Step 1:``.
- ``prm800k`` (the ``openai/prm800k`` JSONL rows): ``question.problem`` and ``label.steps``, each step a list of
  rated ``completions`` (-1, 0, +1), the ``chosen_completion`` that the solution continues with, or a labeller's
  ``human_completion``. One row follows the chosen steps; every other rated completion becomes a row of its own
  after the same chosen prefix. Rows whose ``finish_reason`` is ``bad_problem`` are skipped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.training.common import TrainingInputError, load_table
from ponder.training.verifier_common import check_prompt

StepRow = tuple[list[dict[str, str]], list[str], list[float]]
FORMATS = ("auto", "steps", "math-shepherd", "prm800k")
MATH_SHEPHERD_TAG = "ки"
SEPARATOR = "\n"  # what separates steps where the PRM reads them; serving splits a solution at it too
_STEP_ONE = re.compile(r"step\s*1\s*:", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"\s*\n\s*")


@dataclass
class StepDataset:
    """The rows read from a file, the format they were read as, and what the model card should say about them."""

    rows: list[StepRow]
    format: str
    notes: list[str] = field(default_factory=list)


def read_step_dataset(
    path: str | Path, fmt: str = "auto", *, step_tag: str = MATH_SHEPHERD_TAG, neutral: float = 1.0
) -> StepDataset:
    """Read and check every row of ``path`` (JSONL, JSON or Parquet) as ``fmt`` (``auto``: told by the columns).

    A bad row stops the read with a :class:`TrainingInputError` naming the file, the row (0-based) and the field.
    """
    if fmt not in FORMATS:
        raise TrainingInputError(f"unknown dataset format {fmt!r}; valid: {', '.join(FORMATS)}")
    if not step_tag:
        raise TrainingInputError("--step-tag must not be empty")
    if isinstance(neutral, bool) or not 0.0 <= neutral <= 1.0:
        raise TrainingInputError(f"--neutral-label must be in [0, 1], got {neutral}")
    table = load_table(path, ())
    if fmt == "auto":
        fmt = detect_format(table[0], f"{path}: row 0")
    if fmt == "steps":
        return _steps_dataset(path, table)
    if fmt == "math-shepherd":
        _require(path, table, ("input", "label"))
        rows = [math_shepherd_row(row, f"{path}: row {i}", step_tag) for i, row in enumerate(table)]
        note = f"{len(rows)} Math-Shepherd solutions (step tag {step_tag!r}, `+` = 1, `-` = 0) from `{path}`."
        return StepDataset(rows, fmt, [note])
    _require(path, table, ("question", "label"))
    rows, skipped = [], 0
    for i, row in enumerate(table):
        got = prm800k_rows(row, f"{path}: row {i}", neutral)
        skipped += got is None
        rows += got or []
    if not rows:
        raise TrainingInputError(f"{path}: no PRM800K row has a rated step to learn from")
    note = (
        f"{len(rows)} step sequences from {len(table) - skipped} PRM800K rows of `{path}` (the chosen steps, and "
        f"each other rated completion after the same prefix); ratings +1 = 1, -1 = 0, 0 (neutral) = {neutral:g}"
        + (f"; {skipped} rows with finish_reason bad_problem skipped." if skipped else ".")
    )
    return StepDataset(rows, fmt, [note])


def detect_format(row: dict[str, Any], where: str) -> str:
    """The format a row's columns say: ``input`` + ``label`` is Math-Shepherd, ``question`` + ``label`` PRM800K."""
    if "input" in row and "label" in row:
        return "math-shepherd"
    if "question" in row and "label" in row:
        return "prm800k"
    if "prompt" in row:
        return "steps"
    raise TrainingInputError(
        f"{where}: cannot tell the dataset format from its columns {sorted(row)}; expected `prompt`, `steps`, "
        "`labels` (Ponder), `prompt`, `completions`, `labels` (TRL), `input`, `label` (Math-Shepherd) or "
        "`question`, `label` (PRM800K)"
    )


def _require(path: str | Path, table: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if any(c not in r for r in table)]
    if missing:
        raise TrainingInputError(f"{path}: missing column(s) {missing}; found {sorted(table[0])}")


def flatten_step(text: str) -> str:
    """A step on one line: inner line breaks (with the spaces around them) become one space."""
    return _LINE_BREAKS.sub(" ", text.strip())


# ------------------------------------------------------------------------------------------------ Ponder / TRL


def label_value(value: Any) -> float | None:
    """A step label as a target: true/false, or a probability in [0, 1]; None when it is neither."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and not math.isnan(value) and 0 <= value <= 1:
        return float(value)
    return None


def _steps_dataset(path: str | Path, table: list[dict[str, Any]]) -> StepDataset:
    trl = "steps" not in table[0] and "completions" in table[0]
    column = "completions" if trl else "steps"
    _require(path, table, ("prompt", column, "labels"))
    rows = [steps_row(row, f"{path}: row {i}", column) for i, row in enumerate(table)]
    source = "TRL stepwise-supervision" if trl else "labelled"
    return StepDataset(rows, "steps", [f"{len(rows)} {source} solutions from `{path}`."])


def steps_row(row: dict[str, Any], where: str, column: str = "steps") -> StepRow:
    """One checked row of Ponder's format (``column="steps"``) or TRL's (``column="completions"``).

    Ponder's steps must not hold the step separator (each step is one item); TRL's have their line breaks flattened.
    """
    messages = check_prompt(row["prompt"], where)
    steps, labels = row[column], row["labels"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise TrainingInputError(f"{where}: `{column}` must be a non-empty list of non-empty strings")
    if column == "steps" and any(SEPARATOR in s for s in steps):
        raise TrainingInputError(f"{where}: a step contains the step separator {SEPARATOR!r}; give one step per item")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise TrainingInputError(
            f"{where}: `labels` must be a list with one label per step ({len(steps)}), got {labels!r:.60}"
        )
    targets = [label_value(y) for y in labels]
    if any(t is None for t in targets):
        raise TrainingInputError(f"{where}: `labels` must be true/false or probabilities in [0, 1], got {labels!r:.60}")
    return messages, [flatten_step(s) for s in steps], targets  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ Math-Shepherd


def _tag_marks(text: str, labelled: str, tag: str, where: str) -> tuple[list[str], list[bool]]:
    """The pieces of ``text`` between its tags, and the mark ``labelled`` puts at each tag (``+`` -> True)."""
    pieces = text.split(tag)
    if len(pieces) < 2:
        raise TrainingInputError(f"{where}: `input` has no step tag {tag!r}")
    marks, cursor = [], 0
    for i, piece in enumerate(pieces):
        if labelled[cursor : cursor + len(piece)] != piece:
            raise TrainingInputError(
                f"{where}: `label` differs from `input` at character {cursor}: it must be `input` with each "
                f"{tag!r} replaced by + or -"
            )
        cursor += len(piece)
        if i < len(pieces) - 1:
            mark = labelled[cursor : cursor + 1]
            if mark not in ("+", "-"):
                raise TrainingInputError(
                    f"{where}: `label` has {mark!r} where `input` has step tag {i + 1}; expected + or -"
                )
            marks.append(mark == "+")
            cursor += 1
    if cursor != len(labelled):
        raise TrainingInputError(f"{where}: `label` runs on past the end of `input`")
    return pieces, marks


def math_shepherd_row(row: dict[str, Any], where: str, tag: str = MATH_SHEPHERD_TAG) -> StepRow:
    """One checked Math-Shepherd row: the question before ``Step 1:``, a step ending at each tag, ``+``/``-`` labels.

    A tag before ``Step 1:`` (a known slip in the published rows) is dropped with its label.
    """
    text, labelled = row["input"], row["label"]
    for name, value in (("input", text), ("label", labelled)):
        if not isinstance(value, str) or not value.strip():
            raise TrainingInputError(f"{where}: `{name}` must be a non-empty string, got {value!r:.60}")
    pieces, marks = _tag_marks(text, labelled, tag, where)
    if pieces[-1].strip():
        raise TrainingInputError(f"{where}: `input` has text after its last step tag: {pieces[-1].strip()!r:.60}")
    first = next((i for i, piece in enumerate(pieces[:-1]) if _STEP_ONE.search(piece)), None)
    if first is None:
        raise TrainingInputError(f"{where}: `input` has no 'Step 1:' where the solution starts")
    start = _STEP_ONE.search(pieces[first]).start()  # type: ignore[union-attr]
    question = " ".join(part.strip() for part in (*pieces[:first], pieces[first][:start]) if part.strip())
    if not question:
        raise TrainingInputError(f"{where}: `input` has no question before 'Step 1:'")
    steps = [flatten_step(pieces[first][start:]), *(flatten_step(p) for p in pieces[first + 1 : -1])]
    empty = next((i for i, s in enumerate(steps) if not s), None)
    if empty is not None:
        raise TrainingInputError(f"{where}: `input` has an empty step {empty + 1} (two tags with nothing between)")
    return [{"role": "user", "content": question}], steps, [float(m) for m in marks[first:]]


# ------------------------------------------------------------------------------------------------ PRM800K


def _rating(value: Any, where: str, neutral: float) -> float | None:
    """A PRM800K rating as a target (None: not rated)."""
    if value is None:
        return None
    if isinstance(value, bool) or value not in (-1, 0, 1):
        raise TrainingInputError(f"{where}: `rating` must be -1, 0, 1 or null, got {value!r:.30}")
    return {1: 1.0, -1: 0.0, 0: neutral}[value]


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TrainingInputError(f"{where} must be a non-empty string, got {value!r:.60}")
    return flatten_step(value)


def _completions(step: Any, where: str, neutral: float) -> list[tuple[str, float | None]]:
    """(text, target) of each completion of one PRM800K step."""
    if not isinstance(step, dict) or not isinstance(step.get("completions"), list):
        raise TrainingInputError(f"{where} must be an object with a `completions` list")
    out = []
    for k, completion in enumerate(step["completions"]):
        at = f"{where}.completions[{k}]"
        if not isinstance(completion, dict):
            raise TrainingInputError(f"{at} must be an object with `text` and `rating`")
        out.append((_text(completion.get("text"), f"{at}.text"), _rating(completion.get("rating"), at, neutral)))
    return out


def _next_step(step: dict[str, Any], completions: list, where: str) -> tuple[int | None, str, float | None] | None:
    """The step the solution continues with, as (index among the completions, text, target): the chosen completion,
    else the labeller's own (a +1 step, index None), else None."""
    chosen = step.get("chosen_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
            raise TrainingInputError(
                f"{where}.chosen_completion must index `completions` (0-{len(completions) - 1}) or be null, "
                f"got {chosen!r:.30}"
            )
        return (chosen, *completions[chosen])
    human = step.get("human_completion")
    if human is None:
        return None
    text = human.get("text") if isinstance(human, dict) else human
    return None, _text(text, f"{where}.human_completion"), 1.0


def prm800k_rows(row: dict[str, Any], where: str, neutral: float = 1.0) -> list[StepRow] | None:
    """The step sequences of one PRM800K row (None: skipped as a bad problem).

    The chosen steps make one sequence, up to the first step with no rated continuation; each other rated
    completion makes a sequence of the chosen steps before it and itself. The chosen sequence is left out when it
    is a prefix of such a sequence.
    """
    question, label = row["question"], row["label"]
    problem = question.get("problem") if isinstance(question, dict) else None
    if not isinstance(problem, str) or not problem.strip():
        raise TrainingInputError(f"{where}: `question.problem` must be a non-empty string, got {problem!r:.60}")
    messages = [{"role": "user", "content": problem.strip()}]
    if not isinstance(label, dict) or not isinstance(label.get("steps"), list):
        raise TrainingInputError(f"{where}: `label` must be an object with a `steps` list")
    if label.get("finish_reason") == "bad_problem":
        return None
    steps: list[str] = []
    targets: list[float] = []
    out: list[StepRow] = []
    branched = False
    for j, step in enumerate(label["steps"]):
        at = f"{where}: `label.steps[{j}]`"
        completions = _completions(step, at, neutral)
        taken = _next_step(step, completions, at)
        branched = False
        for k, (text, target) in enumerate(completions):
            if target is not None and (taken is None or k != taken[0]):
                out.append((messages, [*steps, text], [*targets, target]))
                branched = True
        if taken is None or taken[2] is None:
            break
        steps.append(taken[1])
        targets.append(taken[2])
        branched = False
    if steps and not branched:
        out.append((messages, steps, targets))
    return out
