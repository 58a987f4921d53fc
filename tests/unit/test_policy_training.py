"""The policy trainers' pure parts: pair picking with its length guard, the reward adapter, refusals of bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ponder.tasks import generate_problems, render_trace
from ponder.training.common import TrainingInputError
from ponder.training.prefs import length_ok, length_stats, pick_pairs
from ponder.training.rewards import RewardTerm, build_rewards, parse_rewards, weighted_sum


def test_pairs_take_the_widest_margins_first_and_use_no_sample_twice():
    texts = ["aaaa", "bbbb", "cccc", "dddd"]
    pairs = pick_pairs(texts, [1.0, 0.0, 0.6, 0.5], max_ratio=0, min_margin=0.0, limit=5)
    assert pairs == [(0, 1), (2, 3)]
    assert pick_pairs(texts, [1.0, 0.0, 0.6, 0.5], max_ratio=0, min_margin=0.0, limit=1) == [(0, 1)]


def test_pairs_respect_the_margin_and_count_duplicates_once():
    assert pick_pairs(["a", "b"], [0.6, 0.5], max_ratio=0, min_margin=0.2, limit=3) == []
    # the second "x" is the same answer: it can neither be chosen over its twin nor paired again
    assert pick_pairs(["x", "x", "y"], [1.0, 1.0, 0.0], max_ratio=0, min_margin=0.0, limit=3) == [(0, 2)]


def test_the_length_guard_never_pairs_answers_of_very_different_length():
    long_right, short_wrong, short_right = "<think>" + "1+1=2\n" * 10 + "</think>2", "<think></think>3", "2"
    texts = [long_right, short_wrong, short_right]
    # without the guard the long right answer beats the short wrong one; with it, only similar lengths pair
    assert pick_pairs(texts, [1.0, 0.0, 0.9], max_ratio=0, min_margin=0.0, limit=3) == [(0, 1)]
    assert pick_pairs(texts, [1.0, 0.0, 0.9], max_ratio=1.5, min_margin=0.0, limit=3) == []
    assert length_ok("abcd", "abcdef", 1.5) and not length_ok("abcd", "abcdefg", 1.5)
    stats = length_stats([{"chosen": "aaaa", "rejected": "aa"}, {"chosen": "a", "rejected": "aaa"}])
    assert stats == {"mean_chars_chosen": 2.5, "mean_chars_rejected": 2.5, "chosen_longer": 0.5}


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "at least one term"),
        (["scorer=x"], "expected KEY=WEIGHT"),
        (["scorer=nan"], "expected KEY=WEIGHT"),
        (["nope=1"], "unknown term 'nope'"),
        (["scorer=1", "scorer=2"], "listed twice"),
    ],
)
def test_bad_reward_specs_are_refused(specs, message):
    with pytest.raises(TrainingInputError, match=message):
        parse_rewards(specs)


def test_reward_specs_parse_with_default_weight():
    assert parse_rewards(["scorer", "calculator=0.5"]) == [RewardTerm("scorer", 1.0), RewardTerm("calculator", 0.5)]


def test_the_adapter_scores_with_reasoning_gym_the_calculator_and_their_weighted_sum():
    problem = generate_problems("test", 1, [2])[0]
    right = render_trace(problem)
    wrong_sum = f"<think>1+1=3\n</think>{int(problem.answer) + 1}"  # bad arithmetic, wrong answer
    lucky = f"<think>1+1=2\n</think>{problem.answer}"  # true equation, right answer: only the scorer sees the plan
    rewards = build_rewards(parse_rewards(["scorer=1.0", "calculator=0.5"]))
    columns = {k: [v] * 3 for k, v in problem.to_record().items()}
    prompts = [problem.prompt_messages()] * 3
    completions = [[{"role": "assistant", "content": t}] for t in (right, wrong_sum, lucky)]  # TRL's chat form
    scorer, calculator = (asyncio.run(r(prompts=prompts, completions=completions, **columns)) for r in rewards)
    assert scorer == [1.0, 0.0, 1.0]
    assert calculator[0] == 1.0 and calculator[1] == 0.0
    total = asyncio.run(weighted_sum(rewards, prompts, [right, wrong_sum, lucky], **columns))
    assert total == pytest.approx([s + 0.5 * c for s, c in zip(scorer, calculator, strict=True)])
    assert [r.__name__ for r in rewards] == ["scorer", "calculator"]


def test_the_scorer_falls_back_to_math_verify_against_an_answer_column():
    [scorer] = build_rewards(parse_rewards(["scorer"]))
    out = asyncio.run(
        scorer(prompts=["2+2?", "2+2?"], completions=["<think></think>4", "<think></think>5"], answer=["4", "4"])
    )
    assert out == [1.0, 0.0]


def test_qlora_is_refused_without_cuda_and_bad_lora_numbers_are_refused():
    import torch

    from ponder.training.lora import LoraArgs, check_lora

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainingInputError, match="--qlora needs a CUDA GPU"):
        check_lora(LoraArgs(lora_r=8, qlora=True))
    with pytest.raises(TrainingInputError, match="give it a rank with --lora-r"):
        check_lora(LoraArgs(qlora=True))
    with pytest.raises(TrainingInputError, match="--lora-r must be"):
        check_lora(LoraArgs(lora_r=-1))
    check_lora(LoraArgs(lora_r=8))


def test_preference_files_are_checked_row_by_row(tmp_path: Path):
    from ponder.training.dpo import read_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "1+1?", "chosen": "2", "rejected": "3"}) + "\n")
    assert read_pairs(str(path)) == [
        {
            "prompt": [{"role": "user", "content": "1+1?"}],
            "chosen": [{"role": "assistant", "content": "2"}],
            "rejected": [{"role": "assistant", "content": "3"}],
        }
    ]
    for row, message in [
        ({"prompt": "1+1?", "chosen": "2", "rejected": "2"}, "are the same answer"),
        ({"prompt": "", "chosen": "2", "rejected": "3"}, "`prompt` is empty"),
        ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "2", "rejected": "3"}, "ending with a user"),
        ({"prompt": "1+1?", "chosen": 2, "rejected": "3"}, "`chosen` must be a text"),
    ]:
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(TrainingInputError, match=message):
            read_pairs(str(path))


def test_rlaif_the_judge_reads_the_constitution_and_its_yes_is_the_score(tmp_path: Path):
    from ponder.testing import FakeEngine
    from ponder.training.prefs import judge
    from ponder.training.prefs_config import PrefsArgs

    principles = tmp_path / "constitution.txt"
    principles.write_text("1. Say please.\n2. Never use {braces}.")
    seen: list[str] = []

    def responder(prompt, params, index):
        shown = prompt.messages[-1]["content"]
        seen.append(shown)
        return "yes" if "Say please." in shown and "please" in shown.split("Proposed answer:")[1] else "no"

    cfg = PrefsArgs(output=str(tmp_path / "p.jsonl"), verifier="llm_judge", constitution=str(principles))
    ranker = judge(FakeEngine(responder), cfg)
    scores = asyncio.run(ranker(prompts=["2+2?", "2+2?"], completions=["<think></think>4, please", "<think></think>4"]))
    assert scores == [1.0, 0.0]
    assert "Never use {braces}." in seen[0] and "Problem:\n2+2?" in seen[0]  # the principles verbatim, then the case
    assert ranker.__name__ == "llm_judge"


def test_qlora_runs_leave_the_cpu_run_every_other_run_keeps_it(tmp_path: Path):
    from ponder.training.config_args import training_arguments
    from ponder.training.lora import LoraArgs, device_args
    from ponder.training.policy_config import PolicyArgs

    assert device_args(LoraArgs(lora_r=8, qlora=True)) == {"use_cpu": False, "bf16": True}
    assert device_args(LoraArgs(lora_r=8)) == {}
    args = training_arguments(PolicyArgs(output_dir=str(tmp_path)), tmp_path, logging_steps=3, use_cpu=True)
    assert args.use_cpu and args.logging_steps == 3  # an extra overrides the flags and the CPU defaults alike


def test_rft_prompts_are_phrased_as_asked_and_replay_brings_the_bundled_mix():
    from ponder.training.chat_mix import refusal_turn
    from ponder.training.rft import replay_chats, round_prompts
    from ponder.training.rft_config import RFTArgs

    cfg = RFTArgs(output_dir="unused", problems=200, natural_fraction=0.5)
    rows = round_prompts(cfg, 0)
    asked = [r["prompt"][-1]["content"] for r in rows]
    natural = sum(not q.startswith(("State the final", "Solve the following")) for q in asked)
    assert 70 < natural < 130
    assert rows == round_prompts(cfg, 0) and all(r["question"].startswith(("State", "Solve")) for r in rows)
    replay = replay_chats(cfg, 0, 400)
    assert len(replay) == 400 + 320 + 40  # the problems, then the mix's two-term problems and refusals
    assert sum(r["messages"][-1]["content"] == refusal_turn() for r in replay) == 40
    seeds = {r["seed"] for r in rows}
    assert not seeds & {p.seed for p in generate_problems("train", 400, offset=50_000_000)}


@pytest.mark.parametrize(
    ("flags", "message"), [({"natural_fraction": 1.5}, "--natural-fraction"), ({"replay": -1.0}, "--replay")]
)
def test_rft_refuses_bad_mix_numbers(flags, message):
    from ponder.training.rft import train_rft
    from ponder.training.rft_config import RFTArgs

    with pytest.raises(TrainingInputError, match=message):
        train_rft(RFTArgs(output_dir="unused", **flags))
