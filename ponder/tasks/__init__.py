"""The arithmetic task of the bundled models: problems, difficulty levels, seed splits, traces and grading."""

from ponder.tasks.levels import ALL_LEVELS, LEVELS, SPLITS, TASKS, SeedRange, Spec, check_levels, split_range
from ponder.tasks.problems import Problem, check_tasks, generate_problems, grade, is_correct, make_problem
from ponder.tasks.traces import (
    ANSWER_FORMAT,
    STEP_SEPARATOR,
    THINK_CLOSE,
    THINK_OPEN,
    ParsedOutput,
    check_step,
    gold_steps,
    grade_output,
    parse_output,
    render_trace,
    sft_messages,
    step_labels,
)

__all__ = [
    "ALL_LEVELS",
    "ANSWER_FORMAT",
    "LEVELS",
    "SPLITS",
    "STEP_SEPARATOR",
    "TASKS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "ParsedOutput",
    "Problem",
    "SeedRange",
    "Spec",
    "check_levels",
    "check_step",
    "check_tasks",
    "generate_problems",
    "gold_steps",
    "grade",
    "grade_output",
    "is_correct",
    "make_problem",
    "parse_output",
    "render_trace",
    "sft_messages",
    "split_range",
    "step_labels",
]
