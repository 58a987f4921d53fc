"""Preference pairs for ``ponder train rm --loss bt``: an explicit prompt, or TRL's implicit-prompt conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.training.common import TrainingInputError
from ponder.training.pair_datasets import read_pairs

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "2+3?"}
GOOD = {"role": "assistant", "content": "5"}
BAD = {"role": "assistant", "content": "6"}


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_explicit_and_implicit_prompts_read_the_same(tmp_path: Path):
    rows = [
        {"prompt": "2+3?", "chosen": "5", "rejected": "6"},
        {"prompt": [SYSTEM, USER], "chosen": [GOOD], "rejected": [BAD]},
        {"chosen": [SYSTEM, USER, GOOD], "rejected": [SYSTEM, USER, BAD]},  # TRL's implicit prompt
    ]
    assert read_pairs(_write(tmp_path, rows)) == [
        ([USER], "5", "6"),
        ([SYSTEM, USER], "5", "6"),
        ([SYSTEM, USER], "5", "6"),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"chosen": [USER, GOOD]}, "missing column(s) ['rejected']"),
        ({"chosen": "5", "rejected": "6"}, "row 1: without a `prompt` column, `chosen` must be a conversation"),
        ({"chosen": [USER, GOOD], "rejected": [USER]}, "row 1: without a `prompt` column, `rejected` must be"),
        ({"chosen": [USER, GOOD], "rejected": [GOOD, USER]}, "row 1: `rejected` must end with an assistant turn"),
        ({"chosen": [SYSTEM, USER, GOOD], "rejected": [USER, BAD]}, "row 1: `chosen` and `rejected` must share"),
        ({"chosen": [GOOD, GOOD], "rejected": [GOOD, BAD]}, "row 1: `prompt` must end with a user turn"),
        ({"chosen": [USER, {"role": "assistant", "content": ""}], "rejected": [USER, BAD]}, "row 1: `chosen` is empty"),
    ],
)
def test_bad_implicit_rows_are_refused_by_row_and_column(tmp_path: Path, row: dict, message: str):
    good = {"chosen": [USER, GOOD], "rejected": [USER, BAD]}
    with pytest.raises(TrainingInputError) as err:
        read_pairs(_write(tmp_path, [good, row]))
    assert message in str(err.value)
