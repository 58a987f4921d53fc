"""``ponder train genprm`` end to end for a few steps, then served as a step verifier: what it scores is right."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ponder.cli.main import main as ponder
from ponder.core.sidecar import models_dir
from ponder.tasks import generate_problems, gold_steps
from ponder.verifiers.formats import render_prompt, reverse_digits
from ponder.verifiers.generative_prm import GenerativePRM
from ponder.verifiers.registry import VerifierSet, detect_kind, parse_spec

FEW_STEPS = ["--train-size", "64", "--eval-size", "8", "--hidden-size", "64", "--num-layers", "1"]
FEW_STEPS += ["--intermediate-size", "128", "--max-steps", "3", "--batch-size", "8", "--threads", "2"]


@pytest.fixture(scope="module")
def genprm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("genprm")
    assert ponder(["train", "genprm", "--output-dir", str(out), "--overwrite", *FEW_STEPS]) == 0
    return out


def test_the_folder_says_it_is_a_generative_prm(genprm: Path) -> None:
    sidecar = json.loads((genprm / "ponder.json").read_text())
    assert (sidecar["kind"], sidecar["format"], sidecar["number_order"]) == ("prm", "generative", "reversed")
    assert detect_kind(genprm) == "prm-generative"
    config = json.loads((genprm / "training_config.json").read_text())
    assert config["command"].startswith("ponder train genprm --output-dir") and config["steps"] == 3


def _reference_step_probability(
    folder: Path, messages: list[dict], steps: list[str], index: int, answer: str | None = None
) -> float:
    """The probability of step ``index`` computed the long way: two texts, two forward passes, a difference.

    With ``answer``, the probability of closing the think block after the steps, the answer, and the turn's end."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    view = [{**m, "content": reverse_digits(m["content"])} for m in messages]
    head = render_prompt(tokenizer, view) + "<think>" + "".join(reverse_digits(s) + "\n" for s in steps[:index])
    if answer is None:
        text = head + reverse_digits(steps[index]) + "\n"
    else:
        text = head + "</think>" + reverse_digits(answer) + "<|end|>"  # the chat template's end of a turn
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        logprobs = model(input_ids=ids).logits.log_softmax(-1)[0]
    return math.exp(sum(float(logprobs[t - 1, ids[0, t]]) for t in range(n_head, ids.shape[1])))


async def test_a_step_scores_the_probability_of_the_step_as_written(genprm: Path) -> None:
    problem = generate_problems("test", 1, [3])[0]
    steps = gold_steps(problem)
    verifier = GenerativePRM(genprm, device="cpu")
    try:
        (scores,) = await verifier.score_steps(problem.prompt_messages(), [steps])
        assert len(scores) == len(steps)
        for i, score in enumerate(scores):
            expected = _reference_step_probability(genprm, problem.prompt_messages(), steps, i)
            assert score == pytest.approx(expected, rel=1e-3)
        answer = _reference_step_probability(genprm, problem.prompt_messages(), steps, len(steps), answer="1")
        [with_answer] = await verifier.score_steps(problem.prompt_messages(), [[*steps, "</think>1"]])
        assert with_answer[:-1] == pytest.approx(scores) and with_answer[-1] == pytest.approx(answer, rel=1e-3)
        whole = await verifier.score(problem.prompt_messages(), ["<think>" + "\n".join(steps) + "\n</think>1"])
        assert whole == [pytest.approx(min([*scores, answer]))]
    finally:
        await verifier.aclose()


async def test_the_bundled_prm_reads_the_answer_and_sees_a_solution_that_stops_early() -> None:
    """Every written step of the first two is right; one stops before the last partial product, one closes with a
    wrong answer. Only the answer item tells them from the complete solution; without it all three look alike."""
    messages = [{"role": "user", "content": "Can you tell me the answer to 59 * 32? Reply with just the answer."}]
    complete = "<think>59*2=118\n59*30=1770\n118+1770=1888\n</think>1888"
    answers = ["<think>59*2=118\n</think>118", complete.replace("</think>1888", "</think>1887"), complete]
    reading, blind = (GenerativePRM(models_dir() / "prm", device="cpu", scores_answer=on) for on in (True, False))
    try:
        early, wrong, right = await reading.score(messages, answers)
        assert right > 0.9 and early < 0.05 and wrong < 0.05
        assert min(await blind.score(messages, answers)) > 0.9
        assert reading.steps(answers[0]) == ["59*2=118", "</think>118"] and blind.steps(answers[0]) == ["59*2=118"]
    finally:
        await reading.aclose()
        await blind.aclose()


async def test_served_by_name_as_a_step_verifier(genprm: Path) -> None:
    vset = VerifierSet.from_specs([parse_spec(f"judge={genprm}:prm-generative,agg=last")], engine=None)
    try:
        verifier = vset.get("judge")
        assert verifier.step_level and isinstance(verifier, GenerativePRM) and verifier.aggregation == "last"
        (scores,) = await verifier.score_steps("What is 2 + 3?", [["2+3=5"]])
        assert 0.0 < scores[0] <= 1.0
    finally:
        await vset.aclose()


def test_measured_on_graded_samples_and_carded(genprm: Path) -> None:
    from ponder.training.genprm_card import measure, render_card
    from ponder.training.samples import sample_record

    problems = generate_problems("validation", 4, [2])
    samples = []
    for problem in problems:
        steps = gold_steps(problem)
        samples.append(
            sample_record(problem, "<think>" + "".join(s + "\n" for s in steps) + "</think>" + problem.answer)
        )
        samples.append(sample_record(problem, "<think>1+1=3\n</think>3"))
    data = {"policy": "gold", "split": "validation", "problems": 4, "k": 2, "temperature": 0.0}
    report = measure(genprm, samples, data)
    assert report["steps"] == sum(len(s["steps"]) for s in samples)
    assert report["baselines"]["pass@2"] == 1.0 and report["baselines"]["mean_sample_acc"] == 0.5
    assert json.loads((genprm / "eval.json").read_text())["steps"] == report["steps"]
    card = render_card(genprm, report)
    assert "ponder train genprm --output-dir" in card and "| steps judged |" in card


def logs(scores: list[float]) -> list[float]:
    """Step scores in log space: a wrong step scores 1e-9 or less, where an absolute tolerance sees nothing."""
    return [math.log(max(s, 1e-300)) for s in scores]


def plain_step_scores(verifier: GenerativePRM, problem, steps: list[str]) -> list[float]:
    """Step scores from one plain forward pass over the whole text: no cache, no batch."""
    import torch

    ids, spans = verifier.features(problem, steps)
    with torch.inference_mode():
        logprobs = verifier.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [math.exp(sum(float(logprobs[t - 1, ids[t]]) for t in range(a, b))) for a, b in spans]


@pytest.mark.parametrize("shared_steps", [0, 1], ids=["question-shared", "first-step-shared"])
async def test_candidates_of_one_question_score_as_one_plain_pass_each(shared_steps: int) -> None:
    """Scored together, candidates continue from the cached question and one pass over what they all start with
    (the question, or also their first step), duplicates are scored once, and a candidate that is a prefix of
    another still gets its own scores: all as a plain forward pass over each gives, the question read anew or not.

    On the bundled PRM: a model trained a few steps scores every position nearly alike, which would hide an
    off-by-one position."""
    problem = generate_problems("test", 3, [3])[2]
    steps = gold_steps(problem)
    solutions = [steps, [*steps[:1], "1+1=3"], steps, steps[:1]]
    if not shared_steps:
        solutions.append(["9-9=0", *steps])
    verifier = GenerativePRM(models_dir() / "prm", device="cpu")
    assert verifier.model.config._attn_implementation == "sdpa"  # a flash-attention kernel would drop the tree mask
    try:
        messages = problem.prompt_messages()
        plain = [plain_step_scores(verifier, messages, s) for s in solutions]
        cold = await verifier.score_steps(messages, solutions)
        assert (verifier.tree_reader.misses, verifier.tree_reader.hits) == (1, 0)
        warm = await verifier.score_steps(messages, solutions)
        assert (verifier.tree_reader.misses, verifier.tree_reader.hits) == (1, 1)
        for together in (cold, warm):
            assert [len(s) for s in together] == [len(s) for s in solutions]
            for a, b in zip(together, plain, strict=True):
                assert logs(a) == pytest.approx(logs(b), abs=1e-3)
        assert cold[0] == cold[2] and cold[3] == pytest.approx(cold[0][:1], rel=1e-4)
        lone = generate_problems("test", 4, [2])[3]  # a lone answer: read whole with its question, then from it
        lone_steps, lone_messages = ["9-9=0", *gold_steps(lone), "1+1=3"], lone.prompt_messages()
        expected = plain_step_scores(verifier, lone_messages, lone_steps)
        for _ in range(2):
            [got] = await verifier.score_steps(lone_messages, [lone_steps])
            assert logs(got) == pytest.approx(logs(expected), abs=1e-3)
        assert (verifier.tree_reader.misses, verifier.tree_reader.hits) == (2, 2)
    finally:
        await verifier.aclose()
