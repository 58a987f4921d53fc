"""ORM and PRM verifiers on tiny random models built here: shapes, featurisation, batch and padding invariance."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import pytest

from ponder.verifiers.base import split_steps
from ponder.verifiers.formats import orm_text, prm_features, render_prompt
from ponder.verifiers.hf import VerifierLoadError

pytest.importorskip("torch")

PROBLEM = [{"role": "user", "content": "What is 2 + 3 - 1?"}]
ANSWERS = [
    "<think>2+3=5\n5-1=4\n</think>4",
    "<think>2+3=6\n</think>6",
    "4",
    "<think>2+3=5\n5-1=4\n4+0=4\n4*1=4\n</think>The answer is 4.",
]
SOLUTIONS = [["2+3=5", "5-1=4"], ["2+3=6"], ["2+3=5", "5-1=4", "4+0=4"], []]


def build_model(
    out: Path,
    arch: str,
    *,
    num_labels: int = 1,
    sidecar: dict | None = None,
    extra_tokens: tuple[str, ...] = (),
    max_len: int = 256,
    seed: int = 0,
) -> Path:
    """Save a random one-layer Llama of class ``Llama<arch>`` with the bundled models' tokenizer (and a sidecar)."""
    import torch
    import transformers

    from ponder.training.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(model_max_length=max_len)
    if extra_tokens:
        tokenizer.add_tokens(list(extra_tokens))
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=max_len,
        num_labels=num_labels,
        initializer_range=0.1,  # spread the random scores so comparisons mean something
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = getattr(transformers, f"Llama{arch}")(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if sidecar is not None:
        (out / "ponder.json").write_text(json.dumps(sidecar))
    return out


ORM_SIDECAR = {
    "kind": "orm",
    "format": "sequence_classification",
    "step_separator": "\n",
    "answer_format": "final_number",
    "think_tags": ["<think>", "</think>"],
}
PRM_SIDECAR = {**ORM_SIDECAR, "kind": "prm", "format": "token_classification", "score": "sigmoid"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verifier-models")
    return {
        "orm": build_model(root / "orm", "ForSequenceClassification", sidecar=ORM_SIDECAR),
        "orm2": build_model(root / "orm2", "ForSequenceClassification", num_labels=2),
        "prm": build_model(root / "prm", "ForTokenClassification", sidecar=PRM_SIDECAR),
        "prm2": build_model(root / "prm2", "ForTokenClassification", num_labels=2, sidecar=PRM_SIDECAR),
        "shepherd": build_model(
            root / "shepherd",
            "ForCausalLM",
            sidecar={"kind": "prm", "format": "step_tag", "step_tag": " #", "good_token": "+", "bad_token": "-"},
        ),
        "qwen": build_model(
            root / "qwen", "ForTokenClassification", num_labels=2, extra_tokens=("<extra_0>",), sidecar={"kind": "prm"}
        ),
        "causal": build_model(root / "causal", "ForCausalLM"),
    }


@pytest.fixture(scope="module")
def orm(folders):
    from ponder.verifiers.orm import OutcomeRewardModel

    return OutcomeRewardModel(folders["orm"], device="cpu")


@pytest.fixture(scope="module")
def prm(folders):
    from ponder.verifiers.prm import ProcessRewardModel

    return ProcessRewardModel(folders["prm"], device="cpu")


def _close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def test_orm_scores_are_the_logit_of_orm_text(orm) -> None:
    import torch

    scores = await orm.score(PROBLEM, ANSWERS)
    assert len(scores) == len(ANSWERS) and all(isinstance(s, float) for s in scores)
    assert len({round(s, 4) for s in scores}) == len(ANSWERS)  # the random head tells them apart
    for answer, score in zip(ANSWERS, scores, strict=True):
        ids = orm.tokenizer(orm_text(orm.tokenizer, PROBLEM, answer), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            expected = orm.model(**ids).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-4)


async def test_orm_batch_equals_one_by_one_despite_padding(orm) -> None:
    batch = await orm.score(PROBLEM, ANSWERS)
    single = [(await orm.score(PROBLEM, [a]))[0] for a in ANSWERS]
    assert _close(batch, single)
    reversed_batch = await orm.score(PROBLEM, ANSWERS[::-1])
    assert _close(reversed_batch[::-1], batch)
    assert await orm.score(PROBLEM, []) == []
    # a duplicate (scored once) and an answer that is a prefix of another (the shared pass must stop before it)
    more = [*ANSWERS, ANSWERS[0], ANSWERS[0][:12]]
    assert _close(await orm.score(PROBLEM, more), [*single, single[0], (await orm.score(PROBLEM, more[-1:]))[0]])


async def test_orm_plain_text_problem_is_one_user_turn(orm) -> None:
    assert _close(await orm.score("What is 2 + 3 - 1?", ANSWERS), await orm.score(PROBLEM, ANSWERS))


async def test_orm_two_labels_scores_log_odds(folders) -> None:
    import torch

    from ponder.verifiers.orm import OutcomeRewardModel

    orm2 = OutcomeRewardModel(folders["orm2"], device="cpu")
    [score] = await orm2.score(PROBLEM, ANSWERS[:1])
    ids = orm2.tokenizer(orm_text(orm2.tokenizer, PROBLEM, ANSWERS[0]), add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        logits = orm2.model(**ids).logits[0]
    assert score == pytest.approx((logits[1] - logits[0]).item(), abs=1e-4)


async def test_concurrent_calls_are_merged_into_one_forward_batch(orm) -> None:
    before = orm.batches_run
    results = await asyncio.gather(*(orm.score(PROBLEM, [a]) for a in ANSWERS))
    assert orm.batches_run - before == 1
    assert _close([r[0] for r in results], await orm.score(PROBLEM, ANSWERS))


async def test_orm_keeps_the_end_of_an_input_longer_than_its_context(orm) -> None:
    long_answer = "<think>" + "1+1=2\n" * 80 + "</think>2"  # > 256 tokens
    assert len(orm.encode(PROBLEM, long_answer)) == orm.max_len
    [score] = await orm.score(PROBLEM, [long_answer])
    assert isinstance(score, float)


async def test_prm_one_score_per_step_read_at_the_formats_positions(prm) -> None:
    import torch

    scores = await prm.score_steps(PROBLEM, SOLUTIONS)
    assert [len(s) for s in scores] == [len(s) for s in SOLUTIONS]
    assert all(0.0 <= v <= 1.0 for s in scores for v in s)
    assert abs(scores[0][0] - scores[1][0]) > 1e-3  # "2+3=5" and "2+3=6" are read at their own tokens
    ids, positions = prm_features(prm.tokenizer, render_prompt(prm.tokenizer, PROBLEM), SOLUTIONS[2], "\n")
    with torch.inference_mode():
        logits = prm.model(input_ids=torch.tensor([ids])).logits[0, positions, 0]
    assert _close(scores[2], logits.sigmoid().tolist(), 1e-5)


async def test_prm_batch_equals_one_by_one_and_prefixes_agree(prm) -> None:
    batch = await prm.score_steps(PROBLEM, SOLUTIONS)
    for steps, scores in zip(SOLUTIONS, batch, strict=True):
        assert _close((await prm.score_steps(PROBLEM, [steps]))[0], scores)
    # a causal PRM judges step i on steps <= i only: a partial solution scores like the whole one's prefix
    assert _close(batch[0], batch[2][:2])


async def test_prm_score_aggregates_the_parsed_steps(folders, prm) -> None:
    from ponder.verifiers.prm import ProcessRewardModel

    step_scores = await prm.score_steps(PROBLEM, [split_steps(a) for a in ANSWERS])
    assert [len(s) for s in step_scores] == [2, 1, 1, 4]  # the bare answer "4" is one step
    assert _close(await prm.score(PROBLEM, ANSWERS), [min(s) for s in step_scores])
    last = ProcessRewardModel(folders["prm"], device="cpu", aggregation="last")
    assert _close(await last.score(PROBLEM, ANSWERS), [s[-1] for s in step_scores])
    assert await prm.score(PROBLEM, ["", "<think>\n\n</think>"]) == [0.0, 0.0]


async def test_prm_two_labels_uses_softmax_of_the_good_label(folders) -> None:
    import torch

    from ponder.verifiers.prm import ProcessRewardModel

    prm2 = ProcessRewardModel(folders["prm2"], device="cpu")
    [scores] = await prm2.score_steps(PROBLEM, SOLUTIONS[:1])
    ids, positions = prm_features(prm2.tokenizer, render_prompt(prm2.tokenizer, PROBLEM), SOLUTIONS[0], "\n")
    with torch.inference_mode():
        logits = prm2.model(input_ids=torch.tensor([ids])).logits[0, positions]
    assert _close(scores, logits.softmax(-1)[:, 1].tolist(), 1e-5)


async def test_prm_long_solution_is_cut_from_the_left_and_keeps_one_score_per_step(prm) -> None:
    steps = [f"{i}+1={i + 1}" for i in range(60)]  # ~ 400 tokens > 256
    [scores] = await prm.score_steps(PROBLEM, [steps])
    assert len(scores) == 60 and all(0.0 <= s <= 1.0 for s in scores)


async def test_step_tag_format_reads_p_good_at_each_tag(folders) -> None:
    import torch

    from ponder.verifiers.prm import ProcessRewardModel

    shepherd = ProcessRewardModel(folders["shepherd"], device="cpu")
    assert shepherd.format == "step_tag"
    steps = SOLUTIONS[2]
    [scores] = await shepherd.score_steps(PROBLEM, [steps])
    tok = shepherd.tokenizer
    text = render_prompt(tok, PROBLEM) + "\n".join(s + " #" for s in steps)
    ids = tok(text, add_special_tokens=True)["input_ids"]
    tag = tok.convert_tokens_to_ids("#")
    positions = [i for i, t in enumerate(ids) if t == tag]
    good, bad = tok.convert_tokens_to_ids("+"), tok.convert_tokens_to_ids("-")
    with torch.inference_mode():
        logits = shepherd.model(input_ids=torch.tensor([ids])).logits[0, positions][:, [good, bad]]
    assert len(positions) == len(steps)
    assert _close(scores, logits.softmax(-1)[:, 0].tolist(), 1e-5)
    assert _close((await shepherd.score_steps(PROBLEM, [steps, steps[:1]]))[1], scores[:1])


async def test_qwen_format_reads_softmax_at_each_extra_0_tag(folders) -> None:
    import torch

    from ponder.verifiers.prm import ProcessRewardModel

    qwen = ProcessRewardModel(folders["qwen"], format="qwen", device="cpu")
    steps = SOLUTIONS[0]
    [scores] = await qwen.score_steps(PROBLEM, [steps])
    tok = qwen.tokenizer
    chat = [*PROBLEM, {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
    ids = tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
    positions = [i for i, t in enumerate(ids) if t == tok.convert_tokens_to_ids("<extra_0>")]
    with torch.inference_mode():
        logits = qwen.model(input_ids=torch.tensor([ids])).logits[0, positions]
    assert _close(scores, logits.softmax(-1)[:, 1].tolist(), 1e-5)
    # Qwen's outputs separate steps with blank lines
    assert qwen.steps("Step one.\n\nStep two.\n\nSo \\boxed{4}.") == ["Step one.", "Step two.", "So \\boxed{4}."]


def test_model_loading_errors_are_clear(folders, tmp_path) -> None:
    from ponder.verifiers.orm import OutcomeRewardModel
    from ponder.verifiers.prm import ProcessRewardModel

    with pytest.raises(VerifierLoadError, match="does not exist"):
        OutcomeRewardModel(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerifierLoadError, match=r"no config\.json"):
        ProcessRewardModel(tmp_path / "empty")
    with pytest.raises(VerifierLoadError, match="lacks weights"):
        OutcomeRewardModel(folders["causal"], device="cpu")  # no classification head in a causal LM
    with pytest.raises(VerifierLoadError, match="not an ORM"):
        OutcomeRewardModel(folders["prm"], device="cpu")
    with pytest.raises(VerifierLoadError, match="not a PRM"):
        ProcessRewardModel(folders["orm"], device="cpu")
    with pytest.raises(VerifierLoadError, match="qwen PRM format needs 2 labels"):
        ProcessRewardModel(folders["prm"], format="qwen", device="cpu")
    with pytest.raises(VerifierLoadError, match="unknown PRM format 'beam'; valid: token_classification"):
        ProcessRewardModel(folders["prm"], format="beam", device="cpu")
    with pytest.raises(ValueError, match="unknown step aggregation 'max'; valid: min, prod, last, mean"):
        ProcessRewardModel(folders["prm"], aggregation="max", device="cpu")
    broken = tmp_path / "broken"
    shutil.copytree(folders["orm"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VerifierLoadError, match="cannot load it as AutoModelForSequenceClassification"):
        OutcomeRewardModel(broken, device="cpu")


async def test_a_cancelled_caller_leaves_the_batcher_working(prm) -> None:
    task = asyncio.create_task(prm.score_steps(PROBLEM, SOLUTIONS))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [len(s) for s in await prm.score_steps(PROBLEM, SOLUTIONS)] == [2, 1, 3, 0]


BUNDLED = Path(__file__).resolve().parents[2] / "ponder" / "models"


@pytest.mark.skipif(
    not (BUNDLED / "prm" / "config.json").is_file() or not (BUNDLED / "orm" / "config.json").is_file(),
    reason="the bundled models/orm and models/prm are not trained yet",
)
async def test_bundled_set_scores_gold_and_corrupted_traces_and_the_prm_and_calculator_tell_them_apart() -> None:
    """The bundled PRM, ORM and calculator all catch a first step whose result is off by 3 in its last digit."""
    from ponder.tasks.problems import generate_problems
    from ponder.tasks.traces import render_trace
    from ponder.verifiers.registry import default_verifiers

    vset = default_verifiers(BUNDLED)
    prm, orm, calc = vset.get("prm"), vset.get("orm"), vset.get("calculator")
    for problem in generate_problems("test", count=8):
        gold = render_trace(problem)
        first_line, rest = gold.split("\n", 1)
        wrong = str(int(problem.answer) + 7)
        bad = f"{first_line[:-1]}{(int(first_line[-1]) + 3) % 10}\n{rest.rsplit('</think>', 1)[0]}</think>{wrong}"
        messages = problem.prompt_messages()
        gold_score, bad_score = await prm.score(messages, [gold, bad])
        assert 0.0 <= bad_score < gold_score <= 1.0 and bad_score < 0.5
        gold_score, bad_score = await orm.score(messages, [gold, bad])
        assert math.isfinite(bad_score) and bad_score < gold_score
        assert await calc.score(messages, [gold, bad]) == [1.0, 0.0]
    await vset.aclose()


async def test_the_batcher_runs_its_forward_passes_on_its_own_thread_count() -> None:
    import torch

    from ponder.verifiers.hf import MicroBatcher

    def threads_seen(items):
        return [torch.get_num_threads()] * len(items)

    main_threads = torch.get_num_threads()
    one, two = MicroBatcher(threads_seen), MicroBatcher(threads_seen, threads=2)
    try:
        assert await one.run(["a", "b"]) == [1, 1]  # one thread by default: the engine has the cores
        assert await two.run(["a"]) == [2]
    finally:
        one.close()
        two.close()
    assert torch.get_num_threads() == main_threads  # the setting is the worker thread's own
    with pytest.raises(ValueError, match="verifier threads must be at least 1, got 0"):
        MicroBatcher(threads_seen, threads=0)


def test_one_pass_over_the_answers_prefix_tree_reads_each_as_its_own_row_would(tmp_path: Path) -> None:
    """The question once, then the answers as a prefix tree (shared starts, repeats and an answer that begins
    another read once): the logits of a plain pass over each whole row; the same from the kept question, and over
    several passes when the answers exceed one pass; the least recently used questions go first once the bytes are
    spent."""
    import torch
    from transformers import AutoModelForCausalLM

    from ponder.verifiers.hf import TokenTrie, TreeReader

    model = AutoModelForCausalLM.from_pretrained(build_model(tmp_path / "lm", "ForCausalLM")).eval()
    questions = [list(range(5 + k, 25 + k)) for k in range(3)]  # 20 tokens each
    answers = [[7, 8, 9, 10, 11], [7, 8, 12], [7, 8, 9, 13], [7, 8, 12], [7, 8], [30, 31]]
    trie = TokenTrie.of(answers)
    assert len(trie.tokens) == 9 and trie.paths[1] == trie.paths[3] and trie.paths[4] == trie.paths[0][:2]
    with torch.inference_mode():
        plain = [model(input_ids=torch.tensor([questions[0] + a])).logits[0] for a in answers]
        probe = TreeReader(model, "cpu")
        probe.read(questions[0], [[1]])
        per_question = probe._held
        cache = TreeReader(model, "cpu", max_bytes=2 * per_question)
        for expected_hits in (0, 1):  # read with the question, then from the kept question
            readings = cache.read(questions[0], answers)
            assert (cache.misses, cache.hits) == (1, expected_hits)
            for logits, answer, whole in zip(readings, answers, plain, strict=True):
                assert torch.allclose(logits, whole[19 : 19 + len(answer)], atol=1e-5)  # 19 predicts token 20
        small = TreeReader(model, "cpu", max_tokens=6)  # three passes: the first reads the question, then two hits
        for logits, answer, whole in zip(small.read(questions[0], answers), answers, plain, strict=True):
            assert torch.allclose(logits, whole[19 : 19 + len(answer)], atol=1e-5)
        assert (small.misses, small.hits) == (1, 3)
        for k in (1, 0, 2):  # 0 is held, and now the most recently used; then 1, the least, goes
            cache.read(questions[k], [[1]])
        assert (cache.misses, cache.hits, len(cache)) == (3, 2, 2)
        cache.read(questions[0], [[1]])
        cache.read(questions[1], [[1]])
        assert (cache.misses, len(cache)) == (4, 2) and cache._held <= cache.max_bytes
        off = TreeReader(model, "cpu", max_bytes=0)
        off.read(questions[0], [[1]])
        off.read(questions[0], [[1]])
        assert (off.misses, len(off)) == (2, 0)


def test_length_chunks_bound_the_tokens_padded_or_packed() -> None:
    from ponder.verifiers.hf import length_chunks

    assert length_chunks([5, 1, 3], 6) == [[1, 2], [0]]  # padded: 2 rows of 3
    assert length_chunks([5, 1, 3], 6, packed=True) == [[1, 2], [0]]  # packed: 1 + 3, then 5
    assert length_chunks([2, 2, 2], 6, packed=True) == [[0, 1, 2]]
    assert length_chunks([2, 2, 2], 4) == [[0, 1], [2]]
    assert length_chunks([9], 4, packed=True) == [[0]]  # a row longer than the bound goes alone
