"""Verifier training pieces: the Plackett-Luce loss, pairs/lists/step labels, Monte Carlo labels, metrics, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.core.types import Prompt, SamplingParams
from ponder.tasks import Problem, check_step, generate_problems, gold_steps, render_trace, step_labels
from ponder.testing import FakeEngine
from ponder.training.prm import balance_by_depth, rows_from_samples, targets_of
from ponder.training.prm_negatives import corrupt, hard_negative_rows
from ponder.training.rm import lists_from_samples, pairs_from_samples, plackett_luce_loss, sample_rank
from ponder.training.samples import monte_carlo_labels, sample_record, step_prefix
from ponder.training.verifier_metrics import auroc, pairwise_accuracy, prm_report, selection


def _lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


# ------------------------------------------------------------------------------------------------ PL loss


def test_plackett_luce_matches_the_hand_computed_value():
    import torch

    scores = torch.tensor([2.0, 1.0, 0.5])
    ranks = torch.tensor([0, 1, 2])
    expected = (_lse(2.0, 1.0, 0.5) - 2.0) + (_lse(1.0, 0.5) - 1.0) + 0.0
    assert plackett_luce_loss(scores, ranks).item() == pytest.approx(expected, rel=1e-6)
    # the order of the items does not matter, only their ranks
    perm = torch.tensor([2, 0, 1])
    assert plackett_luce_loss(scores[perm], ranks[perm]).item() == pytest.approx(expected, rel=1e-6)


def test_plackett_luce_ties_share_a_place():
    import torch

    scores = torch.tensor([1.0, 0.0, -1.0])
    ranks = torch.tensor([0, 1, 1])  # the two wrong answers are tied
    expected = (_lse(1.0, 0.0, -1.0) - 1.0) + (_lse(0.0, -1.0) - 0.0) + (_lse(0.0, -1.0) + 1.0)
    assert plackett_luce_loss(scores, ranks).item() == pytest.approx(expected, rel=1e-6)


def test_plackett_luce_is_lower_when_the_ranking_is_respected_and_training_sorts_the_scores():
    import torch

    ranks = torch.tensor([0, 1, 2, 3])
    respected = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert plackett_luce_loss(respected, ranks) < plackett_luce_loss(respected.flip(0), ranks)
    scores = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([scores], lr=0.5)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = plackett_luce_loss(scores, ranks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    assert scores[0] > scores[1] > scores[2] > scores[3]


# ------------------------------------------------------------------------------------------------ data


def _records() -> list[dict]:
    """Three samples of one level-2 chain: correct, wrong at step 2, wrong at step 1; one duplicate."""
    problem = next(p for p in generate_problems("train", 10, [2]) if p.task == "chain_sum")
    gold = render_trace(problem)
    body = gold[len("<think>") : gold.index("</think>")].strip().split("\n")
    wrong_late = "<think>" + body[0] + "\n" + body[1] + "9\n</think>1"
    wrong_early = "<think>1+1=3\n</think>3"
    texts = [gold, wrong_late, wrong_early, gold]
    return [sample_record(problem, t) for t in texts]


def test_sample_records_are_graded_with_exact_step_labels():
    good, late, early, _ = _records()
    assert good["correct"] and good["labels"] == [True] * len(good["steps"])
    assert not late["correct"] and late["labels"][:2] == [True, False]
    assert early["labels"] == [False]
    assert sample_rank(good) < sample_rank(late) < sample_rank(early)


def test_bradley_terry_pairs_take_a_correct_and_a_wrong_sample_of_the_same_prompt():
    records = _records()
    pairs = pairs_from_samples(records, max_pairs=8, seed=0)
    assert len(pairs) == 2  # the duplicate correct completion counts once
    assert {p[1] for p in pairs} == {records[0]["completion"]}
    assert {p[2] for p in pairs} == {records[1]["completion"], records[2]["completion"]}
    assert len(pairs_from_samples(records, max_pairs=1, seed=0)) == 1


def test_plackett_luce_lists_rank_correct_first_then_by_leading_good_steps():
    records = _records()
    [(messages, completions, ranks)] = lists_from_samples(records, max_size=8, seed=0)
    assert messages == records[0]["messages"]
    by_text = dict(zip(completions, ranks, strict=True))
    assert by_text == {records[0]["completion"]: 0, records[1]["completion"]: 1, records[2]["completion"]: 2}
    # a list capped at 2 still spans the best and a wrong one
    [(_, small, small_ranks)] = lists_from_samples(records, max_size=2, seed=0)
    assert len(small) == 2 and sorted(small_ranks) == [0, 1]
    assert lists_from_samples([records[0], records[3]], max_size=8, seed=0) == []  # one rank only


def test_prm_targets_exact_hard_and_soft():
    record = {**_records()[1], "mc": [0.75, 0.0, 0.0][: len(_records()[1]["steps"])]}
    n = len(record["steps"])
    assert targets_of(record, "exact") == [1.0] + [0.0] * (n - 1)
    assert targets_of(record, "mc-hard") == [1.0] + [0.0] * (n - 1)
    assert targets_of(record, "mc-soft")[0] == 0.75
    rows = rows_from_samples([*_records(), sample_record(generate_problems("train", 1)[0], "</think>5")], "exact")
    assert len(rows) == 3  # the duplicate and the solution without steps are dropped


def _problem(task: str, expression: str, answer: str) -> Problem:
    question = f"State the final answer to the following arithmetic problem: {expression} ="
    return Problem("train", 7, 3, task, question, answer, expression)


def _result(step: str) -> int:
    return int(step.split("=")[1])


@pytest.mark.parametrize("seed", range(5))
def test_corrupted_result_changes_one_step_and_carries_it_forward(seed):
    import random

    chain = _problem("chain_sum", "20 - 56 - 31 + 95", "28")
    gold = gold_steps(chain)
    steps = corrupt(chain, random.Random(seed), "result", at=1)
    assert steps[0] == gold[0] and steps[1] != gold[1] and len(steps) == len(gold)
    assert [check_step(s) for s in steps] == [True, False, True]  # only the corrupted step is a false equation
    assert steps[1].split("=")[0] == gold[1].split("=")[0]  # same operands, wrong result
    assert steps[2].startswith(f"{_result(steps[1])}+95=")  # the next step starts from the wrong value
    assert step_labels(chain, steps) == [True, False, False]

    product = _problem("products", "86 * 25", "2150")
    assert gold_steps(product) == ["86*5=430", "86*20=1720", "430+1720=2150"]
    wrong = corrupt(product, random.Random(seed), "result", at=0)
    assert wrong[0].startswith("86*5=") and wrong[0] != "86*5=430" and wrong[1] == "86*20=1720"
    assert wrong[2] == f"{_result(wrong[0])}+1720={_result(wrong[0]) + 1720}"
    assert step_labels(product, wrong) == [False, False, False]


def test_corrupted_operand_and_skipped_term_are_true_equations_labelled_bad():
    import random

    chain = _problem("chain_sum", "20 - 56 - 31 + 95", "28")
    operand = corrupt(chain, random.Random(0), "operand", at=1)
    assert operand[0] == "20-56=-36" and operand[1].startswith("-36-") and operand[1] != "-36-31=-67"
    assert all(check_step(s) for s in operand)  # computed right, on a wrong number
    assert step_labels(chain, operand) == [True, False, False]
    assert corrupt(chain, random.Random(0), "skip", at=1) == ["20-56=-36", "-36+95=59"]
    assert corrupt(chain, random.Random(0), "skip", at=0) == ["20-31=-11", "-11+95=84"]
    assert corrupt(_problem("products", "86 * 25", "2150"), random.Random(0), "skip", at=0) == ["86*20=1720"]
    assert corrupt(_problem("chain_sum", "42 - 25", "17"), random.Random(0), "skip", at=0) is None


def test_hard_negative_rows_gold_first_then_distinct_corruptions_with_exact_labels():
    records = [{**generate_problems("train", 6)[i].to_record(), "steps": []} for i in range(6)]
    rows = hard_negative_rows(records, per_trace=3, seed=0)
    assert rows == hard_negative_rows(records, per_trace=3, seed=0)  # deterministic
    by_question: dict[str, list] = {}
    for messages, steps, targets in rows:
        by_question.setdefault(messages[0]["content"], []).append((steps, targets))
    assert len(by_question) == 6
    for r in records:
        (gold, gold_targets), *bad = by_question[r["question"]]
        problem = Problem.from_record(r)
        assert gold == gold_steps(problem) and gold_targets == [1.0] * len(gold)
        assert len(bad) <= 3 and len({tuple(s) for s, _ in bad}) == len(bad)
        for steps, targets in bad:
            assert targets == [float(y) for y in step_labels(problem, steps)] and 0.0 in targets


def test_balance_by_depth_gives_good_and_bad_equal_weight_at_each_position():
    examples = [{"targets": [1.0, 1.0, 0.0]}, {"targets": [1.0, 0.0]}, {"targets": [0.0]}, {"targets": [1.0, 1.0]}]
    balance_by_depth(examples)
    for depth in range(2):
        cells = [(ex["weights"][depth], ex["targets"][depth]) for ex in examples if len(ex["targets"]) > depth]
        good = sum(w for w, t in cells if t >= 0.5)
        bad = sum(w for w, t in cells if t < 0.5)
        assert good == pytest.approx(bad) and good + bad == pytest.approx(len(cells))
    assert examples[0]["weights"][0] == pytest.approx(4 / 6)  # 3 good, 1 bad at depth 0
    assert examples[0]["weights"][2] == 1.0  # only one class at depth 2: nothing to balance


async def test_monte_carlo_labels_roll_out_each_shared_prefix_once():
    problem = generate_problems("train", 1, [1])[0]
    right, wrong = problem.answer, str(int(problem.answer) + 1)

    def responder(prompt: Prompt, params: SamplingParams, index: int) -> str:
        # after the first step half the rollouts finish right; after two steps all of them do
        done = prompt.prefix.count("\n")
        return "</think>" + (right if done >= 2 or index % 2 == 0 else wrong)

    engine = FakeEngine(responder)
    base = {**problem.to_record(), "messages": problem.prompt_messages()}
    records = [{**base, "steps": ["a", "b"]}, {**base, "steps": ["a"]}, {**base, "steps": ["c"]}]
    labels = await monte_carlo_labels(engine, records, m=4, temperature=1.0)
    assert labels == [[0.5, 1.0], [0.5], [0.5]]
    prefixes = sorted(call[0].prefix for call in engine.calls)
    assert prefixes == ["<think>a\n", "<think>a\nb\n", "<think>c\n"]  # "a" is shared: rolled out once
    assert all(call[2] == 4 for call in engine.calls)  # n=m in one engine call
    assert step_prefix(["x", "y"], 1) == "<think>x\n"


# ------------------------------------------------------------------------------------------------ metrics


def test_auroc_and_pairwise_accuracy_and_selection():
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert auroc([1.0], [True]) is None
    records = [
        {"split": "x", "seed": 1, "level": 1, "correct": True},
        {"split": "x", "seed": 1, "level": 1, "correct": False},
        {"split": "x", "seed": 2, "level": 2, "correct": False},
        {"split": "x", "seed": 2, "level": 2, "correct": True},
    ]
    scores = [1.0, 0.0, 1.0, 0.0]
    assert pairwise_accuracy(records, scores) == {"pairs": 2, "pairwise_accuracy": 0.5}
    assert selection(records, scores) == {"best_of_k": 0.5, "by_level": {"1": 1.0, "2": 0.0}}


def test_prm_report_min_and_last_aggregation():
    records = [
        {"split": "x", "seed": 1, "level": 1, "correct": True, "labels": [True, True], "completion": "</think>1"},
        {"split": "x", "seed": 1, "level": 1, "correct": False, "labels": [False, False], "completion": "</think>2"},
    ]
    report = prm_report(records, [[0.9, 0.3], [0.2, 0.8]])
    assert report["step_accuracy"] == pytest.approx(0.5)
    assert report["selection_min"]["best_of_k"] == 1.0  # min: 0.3 > 0.2
    assert report["selection_last"]["best_of_k"] == 0.0  # last: 0.8 > 0.3
    assert report["baselines"]["pass@2"] == 1.0 and report["baselines"]["mean_sample_acc"] == 0.5


# ------------------------------------------------------------------------------------------------ refusals


def _refused(trainer: str, rows: list, tmp_path: Path, capsys, *extra: str) -> str:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert ponder(["train", trainer, "--output-dir", str(out), "--dataset", str(data), *extra]) == 2
    assert not out.exists()  # refused before anything was written
    return capsys.readouterr().err


BT_OK = {"prompt": "1+1?", "chosen": "<think>1+1=2\n</think>2", "rejected": "<think>1+1=3\n</think>3"}
PL_OK = {"prompt": "1+1?", "completions": ["</think>2", "</think>3"], "ranks": [0, 1]}
PRM_OK = {"prompt": "1+1?", "steps": ["1+1=2"], "labels": [True]}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "q", "chosen": "a"}], "missing column(s) ['rejected']"),
        ([{**BT_OK, "prompt": ""}], "`prompt` is empty"),
        ([{**BT_OK, "prompt": [{"role": "user", "text": "q"}]}], "must hold {role, content} objects"),
        ([{**BT_OK, "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}], "end with"),
        ([{**BT_OK, "chosen": 3}], "`chosen` must be a string"),
        ([{**BT_OK, "rejected": ""}], "`rejected` is empty"),
    ],
)
def test_rm_bt_refuses_bad_rows(tmp_path: Path, capsys, rows, message):
    assert message in _refused("rm", rows, tmp_path, capsys)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([BT_OK], "missing column(s) ['completions', 'ranks']"),
        ([{**PL_OK, "completions": ["only one"], "ranks": [0]}], "at least 2 assistant texts"),
        ([{**PL_OK, "ranks": [0]}], "one integer per completion (2)"),
        ([{**PL_OK, "ranks": [0.5, 1]}], "non-negative integers"),
        ([{**PL_OK, "ranks": [True, False]}], "non-negative integers"),
        ([{**PL_OK, "ranks": [1, 1]}], "ranks all its completions equally"),
    ],
)
def test_rm_pl_refuses_bad_rows(tmp_path: Path, capsys, rows, message):
    assert message in _refused("rm", rows, tmp_path, capsys, "--loss", "pl")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "q", "steps": ["a"]}], "missing column(s) ['labels']"),
        ([{**PRM_OK, "steps": []}], "non-empty list of non-empty strings"),
        ([{**PRM_OK, "steps": ["a\nb"]}], "contains the step separator"),
        ([{**PRM_OK, "labels": [True, False]}], "one label per step (1)"),
        ([{**PRM_OK, "labels": [1.5]}], "probabilities in [0, 1]"),
        ([{**PRM_OK, "labels": ["yes"]}], "probabilities in [0, 1]"),
    ],
)
def test_prm_refuses_bad_rows(tmp_path: Path, capsys, rows, message):
    assert message in _refused("prm", rows, tmp_path, capsys)


def test_refuses_a_model_folder_that_is_not_a_model_and_bad_numbers(tmp_path: Path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    for trainer in ("rm", "prm"):
        argv = ["train", trainer, "--output-dir", str(tmp_path / "o"), "--policy", str(folder)]
        assert ponder(argv) == 2
        assert "is not a model folder: it has no config.json" in capsys.readouterr().err
    assert ponder(["train", "rm", "--output-dir", str(tmp_path / "o"), "--k", "0"]) == 2
    assert "--k must be positive" in capsys.readouterr().err
    assert (
        ponder(["train", "prm", "--output-dir", str(tmp_path / "o"), "--labels", "mc-soft", "--mc-rollouts", "0"]) == 2
    )
    assert "--mc-rollouts must be positive" in capsys.readouterr().err
    assert ponder(["train", "prm", "--output-dir", str(tmp_path / "o"), "--hard-negatives", "-1"]) == 2
    assert "--hard-negatives must be 0 or more" in capsys.readouterr().err
    argv = ["train", "prm", "--output-dir", str(tmp_path / "o"), "--hard-negatives", "2", "--dataset", "x.jsonl"]
    assert ponder(argv) == 2
    assert "not with --dataset" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_lists_every_config_field(capsys):
    from dataclasses import fields

    from ponder.training.prm_config import PRMArgs
    from ponder.training.rm_config import RMArgs

    for trainer, cls in (("rm", RMArgs), ("prm", PRMArgs)):
        with pytest.raises(SystemExit):
            ponder(["train", trainer, "--help"])
        text = capsys.readouterr().out
        for f in fields(cls):
            assert "--" + f.name.replace("_", "-") in text


def test_orm_hard_negative_lists_put_the_gold_trace_first_and_later_mistakes_above_earlier_ones():
    from ponder.training.rm import hard_negative_lists

    records = [{**generate_problems("train", 6)[i].to_record(), "steps": []} for i in range(6)]
    lists = hard_negative_lists(records, per_trace=3, seed=0)
    assert lists and lists == hard_negative_lists(records, per_trace=3, seed=0)
    for messages, texts, ranks in lists:
        problem = next(Problem.from_record(r) for r in records if r["question"] == messages[-1]["content"])
        assert texts[0] == render_trace(problem) and ranks[0] == 0 and min(ranks[1:]) >= 1
        for text, rank in zip(texts[1:], ranks[1:], strict=True):
            steps = text.split("<think>")[1].split("</think>")[0].strip("\n").split("\n")
            labels = step_labels(problem, steps)
            assert not all(labels) and text.endswith(steps[-1].split("=")[-1])
            for other, other_rank in zip(texts[1:], ranks[1:], strict=True):
                other_steps = other.split("<think>")[1].split("</think>")[0].strip("\n").split("\n")
                first_bad = labels.index(False)
                other_first_bad = step_labels(problem, other_steps).index(False)
                if first_bad > other_first_bad and len(steps) == len(other_steps):
                    assert rank < other_rank
