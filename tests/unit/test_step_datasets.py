"""The step-labelled dataset formats of ``ponder train prm``: Ponder/TRL rows, Math-Shepherd and PRM800K files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.training.common import TrainingInputError
from ponder.training.step_datasets import read_step_dataset

Q = "Janet has 3 apples and buys 4 more. How many apples does she have?"
SHEPHERD = {
    "input": f"{Q} Step 1: She buys 4, so 3 + 4 = <<3+4=7>>7. ки\nStep 2: The answer is: 7 ки",
    "label": f"{Q} Step 1: She buys 4, so 3 + 4 = <<3+4=7>>7. +\nStep 2: The answer is: 7 +",
    "task": "GSM8K",
}
SHEPHERD_WRONG = {
    "input": f"{Q} Step 1: 3 - 4 = -1 ки\nStep 2: So she has\n-1 apples. ки\nStep 3: The answer is: -1 ки\n",
    "label": f"{Q} Step 1: 3 - 4 = -1 -\nStep 2: So she has\n-1 apples. -\nStep 3: The answer is: -1 -\n",
    "task": "GSM8K",
}


def _write(tmp_path: Path, rows: list[dict], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _prm800k(steps: list[dict], finish: str = "found_error", problem: str = "What is $2+3$?") -> dict:
    """A row shaped as openai/prm800k's JSONL (the fields the parser reads, plus some it ignores)."""
    return {
        "labeler": "340d89bc",
        "generation": 9,
        "is_quality_control_question": False,
        "question": {"problem": problem, "ground_truth_answer": "5", "pre_generated_steps": ["..."]},
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish},
    }


def _step(*completions: tuple[str, int | None], chosen: int | None = 0, human: object = None) -> dict:
    return {
        "completions": [{"text": t, "rating": r, "flagged": None} for t, r in completions],
        "human_completion": human,
        "chosen_completion": chosen,
    }


# ------------------------------------------------------------------------------------------------ Math-Shepherd


def test_math_shepherd_rows_split_question_and_steps_and_read_the_marks(tmp_path: Path):
    data = read_step_dataset(_write(tmp_path, [SHEPHERD, SHEPHERD_WRONG]))
    assert data.format == "math-shepherd"
    (m1, s1, t1), (m2, s2, t2) = data.rows
    assert m1 == m2 == [{"role": "user", "content": Q}]
    assert s1 == ["Step 1: She buys 4, so 3 + 4 = <<3+4=7>>7.", "Step 2: The answer is: 7"] and t1 == [1.0, 1.0]
    # a line break inside a step becomes a space: serving splits solutions into steps at line breaks
    assert s2 == ["Step 1: 3 - 4 = -1", "Step 2: So she has -1 apples.", "Step 3: The answer is: -1"]
    assert t2 == [0.0, 0.0, 0.0]
    assert "2 Math-Shepherd solutions" in data.notes[0]


def test_math_shepherd_marks_are_read_at_the_tags_not_at_other_plus_signs(tmp_path: Path):
    row = {
        "input": "What is 1+1? Step 1: 1+1=2 ки\nStep 2: 2-0=2 ки",
        "label": "What is 1+1? Step 1: 1+1=2 -\nStep 2: 2-0=2 +",
    }
    (_, steps, targets) = read_step_dataset(_write(tmp_path, [row])).rows[0]
    assert steps == ["Step 1: 1+1=2", "Step 2: 2-0=2"] and targets == [0.0, 1.0]


def test_math_shepherd_tag_before_step_one_is_dropped_with_its_mark(tmp_path: Path):
    # Some published rows carry a tag inside the question; the solution still starts at "Step 1:".
    row = {
        "input": "Round 2.5 ки to an integer. Step 1: It is 3. ки",
        "label": "Round 2.5 + to an integer. Step 1: It is 3. -",
    }
    messages, steps, targets = read_step_dataset(_write(tmp_path, [row])).rows[0]
    assert messages[0]["content"] == "Round 2.5 to an integer." and steps == ["Step 1: It is 3."] and targets == [0.0]


def test_math_shepherd_custom_step_tag(tmp_path: Path):
    row = {"input": "Q? Step 1: a <s> Step 2: b <s>", "label": "Q? Step 1: a + Step 2: b -"}
    (_, steps, targets) = read_step_dataset(_write(tmp_path, [row]), step_tag="<s>").rows[0]
    assert steps == ["Step 1: a", "Step 2: b"] and targets == [1.0, 0.0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"input": SHEPHERD["input"]}, "missing column(s) ['label']"),
        ({**SHEPHERD, "input": 7}, "row 1: `input` must be a non-empty string"),
        ({**SHEPHERD, "input": "Q? Step 1: no tag"}, "row 1: `input` has no step tag 'ки'"),
        ({**SHEPHERD, "label": SHEPHERD["label"].replace("Janet", "Jane")}, "row 1: `label` differs from `input`"),
        ({**SHEPHERD, "label": SHEPHERD["label"].replace("7 +", "7 ?")}, "row 1: `label` has '?' where `input` has"),
        ({**SHEPHERD, "label": SHEPHERD["label"] + " +"}, "row 1: `label` runs on past the end"),
        ({"input": "Q? Step 1: a ки tail", "label": "Q? Step 1: a + tail"}, "row 1: `input` has text after its last"),
        ({"input": "Q? a ки", "label": "Q? a +"}, "row 1: `input` has no 'Step 1:'"),
        ({"input": "Step 1: a ки", "label": "Step 1: a +"}, "row 1: `input` has no question"),
        ({"input": "Q Step 1: a ки ки", "label": "Q Step 1: a + +"}, "row 1: `input` has an empty step 2"),
    ],
)
def test_math_shepherd_bad_rows_are_refused_with_row_and_field(tmp_path: Path, row: dict, message: str):
    with pytest.raises(TrainingInputError) as err:
        read_step_dataset(_write(tmp_path, [SHEPHERD, row]), "math-shepherd")
    assert message in str(err.value) and "data.jsonl" in str(err.value)


# ------------------------------------------------------------------------------------------------ PRM800K


def test_prm800k_follows_the_chosen_steps_and_branches_at_alternatives(tmp_path: Path):
    row = _prm800k(
        [
            _step(("I add the numbers.", 0)),
            _step(("So $2+3=5$.", 1), ("So $2+3=6$.", -1), ("Unrated idea.", None), chosen=0),
            _step(("# Answer\n\n5", 1)),
        ],
        finish="solution",
    )
    data = read_step_dataset(_write(tmp_path, [row]))
    assert data.format == "prm800k"
    prompt = [{"role": "user", "content": "What is $2+3$?"}]
    assert data.rows == [
        (prompt, ["I add the numbers.", "So $2+3=6$."], [1.0, 0.0]),  # the rated alternative after the same prefix
        (prompt, ["I add the numbers.", "So $2+3=5$.", "# Answer 5"], [1.0, 1.0, 1.0]),  # the chosen path
    ]
    assert "neutral) = 1" in data.notes[0]


def test_prm800k_found_error_ends_at_the_wrong_step_and_neutral_is_configurable(tmp_path: Path):
    row = _prm800k([_step(("I add.", 0)), _step(("$2+3=6$", -1), ("$2+3=7$", -1), chosen=None)])
    rows = read_step_dataset(_write(tmp_path, [row]), neutral=0.5).rows
    # the chosen prefix alone is not repeated: both wrong completions already carry it
    assert [(s, t) for _, s, t in rows] == [(["I add.", "$2+3=6$"], [0.5, 0.0]), (["I add.", "$2+3=7$"], [0.5, 0.0])]


def test_prm800k_human_completion_continues_the_solution_as_a_good_step(tmp_path: Path):
    human = {"text": "Then $2+3=5$.", "rating": None, "source": "human", "flagged": False, "corrected_rating": None}
    row = _prm800k([_step(("$2+3=6$", -1), chosen=None, human=human), _step(("# Answer\n\n5", 1))], "solution")
    rows = read_step_dataset(_write(tmp_path, [row])).rows
    assert [(s, t) for _, s, t in rows] == [(["$2+3=6$"], [0.0]), (["Then $2+3=5$.", "# Answer 5"], [1.0, 1.0])]


def test_prm800k_bad_problems_are_skipped_and_counted(tmp_path: Path):
    good = _prm800k([_step(("$2+3=5$", 1))], "solution")
    data = read_step_dataset(_write(tmp_path, [good, _prm800k([_step(("?", 0))], "bad_problem")]))
    assert len(data.rows) == 1 and "1 rows with finish_reason bad_problem skipped" in data.notes[0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": {"problem": "q"}}, "missing column(s) ['label']"),
        (_prm800k([], problem=""), "row 1: `question.problem` must be a non-empty string"),
        ({**_prm800k([]), "question": "q"}, "row 1: `question.problem` must be a non-empty string"),
        ({**_prm800k([]), "label": {"steps": None}}, "row 1: `label` must be an object with a `steps` list"),
        (_prm800k([{"text": "a"}]), "row 1: `label.steps[0]` must be an object with a `completions` list"),
        (_prm800k([_step(("a", 2))]), "row 1: `label.steps[0]`.completions[0]: `rating` must be -1, 0, 1 or null"),
        (_prm800k([_step(("", 1))]), "row 1: `label.steps[0]`.completions[0].text must be a non-empty string"),
        (_prm800k([_step(("a", 1), chosen=3)]), "row 1: `label.steps[0]`.chosen_completion must index"),
        (_prm800k([_step(("a", -1), chosen=None, human={"x": 1})]), "`label.steps[0]`.human_completion must be"),
    ],
)
def test_prm800k_bad_rows_are_refused_with_row_and_field(tmp_path: Path, row: dict, message: str):
    good = _prm800k([_step(("$2+3=5$", 1))], "solution")
    with pytest.raises(TrainingInputError) as err:
        read_step_dataset(_write(tmp_path, [good, row]), "prm800k")
    assert message in str(err.value)


def test_prm800k_with_nothing_rated_is_refused(tmp_path: Path):
    with pytest.raises(TrainingInputError, match="no PRM800K row has a rated step"):
        read_step_dataset(_write(tmp_path, [_prm800k([_step(("a", None), chosen=None)])]))


# -------------------------------------------------------------------------------------- Ponder / TRL, detection


def test_ponder_and_trl_stepwise_rows(tmp_path: Path):
    ours = {"prompt": "1+1?", "steps": ["1+1=2"], "labels": [True]}
    assert read_step_dataset(_write(tmp_path, [ours], "a.jsonl")).rows == [
        ([{"role": "user", "content": "1+1?"}], ["1+1=2"], [1.0])
    ]
    trl = {"prompt": "1+1?", "completions": ["1+1\n=2", "so 2"], "labels": [True, False]}
    data = read_step_dataset(_write(tmp_path, [trl], "b.jsonl"))
    assert data.format == "steps" and data.rows[0][1:] == (["1+1 =2", "so 2"], [1.0, 0.0])
    assert "TRL stepwise-supervision" in data.notes[0]


def test_format_detection_refuses_unknown_columns_and_a_forced_format_needs_its_columns(tmp_path: Path):
    with pytest.raises(TrainingInputError, match=r"row 0: cannot tell the dataset format from its columns \['text'\]"):
        read_step_dataset(_write(tmp_path, [{"text": "x"}]))
    with pytest.raises(TrainingInputError, match=r"missing column\(s\) \['input', 'label'\]"):
        read_step_dataset(_write(tmp_path, [{"prompt": "q", "steps": ["a"], "labels": [1]}]), "math-shepherd")
    with pytest.raises(TrainingInputError, match="unknown dataset format 'csv'"):
        read_step_dataset(_write(tmp_path, [SHEPHERD]), "csv")
    with pytest.raises(TrainingInputError, match=r"--neutral-label must be in \[0, 1\]"):
        read_step_dataset(_write(tmp_path, [SHEPHERD]), neutral=2.0)


def test_parquet_files_read_the_same(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "shepherd.parquet"
    pq.write_table(pa.Table.from_pylist([SHEPHERD, SHEPHERD_WRONG]), path)
    assert read_step_dataset(path).rows == read_step_dataset(_write(tmp_path, [SHEPHERD, SHEPHERD_WRONG])).rows
