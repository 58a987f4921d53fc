"""Verifiers for real models: `ponder train rm/prm --base-model --dataset` (one with LoRA), served by `ponder serve`.

The base model is built here and is nothing like the bundled ones: a Qwen2 causal LM with a byte-level BPE
tokenizer trained on a few sentences, no chat template and no pad token. It is trained as an ORM on preference
pairs (and as a token-pooled ORM on the same pairs), as a PRM on a Math-Shepherd file (with LoRA) and on a PRM800K
file, then served as verifiers of a real `ponder serve` process and used by best_of_n requests made through the
official openai client.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import openai
import pytest

from ponder.cli.main import main as ponder
from tests.e2e.conftest import PONDER, start_server, stop_server

pytestmark = pytest.mark.e2e

FEW_STEPS = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--threads", "2", "--eval-problems", "0"]
QUESTIONS = [("Tom has 3 red pens and 4 blue pens. How many pens?", 3, 4), ("A box holds 5 cups and 2 more.", 5, 2)]
CORPUS = [
    "Question: how many apples are left? Answer: Step 1: She has three apples. The answer is: 7",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
    "Step 2: So the total is 12 + 30 = 42 ки\nStep 3: The answer is: 42 ки",
    "Let me think about this problem step by step before I answer it.",
    "<think>first I add the numbers, then I check the result</think> 9",
]


def build_base_model(out: Path) -> Path:
    """A random Qwen2 causal LM with a byte-level BPE tokenizer trained here: no chat template, no pad token."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", model_max_length=1024)
    assert tokenizer.chat_template is None and tokenizer.pad_token is None
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def preference_pairs(path: Path) -> Path:
    """Pairs with an explicit prompt, and TRL's implicit-prompt conversations (every other row)."""
    rows = []
    for i, (q, a, b) in enumerate(QUESTIONS * 3):
        right, wrong = f"<think>{a} + {b} = {a + b}\n</think>{a + b}", f"<think>{a} + {b} = {a * b}\n</think>{a * b}"
        if i % 2:
            user = {"role": "user", "content": q}
            chosen, rejected = (
                [user, {"role": "assistant", "content": right}],
                [user, {"role": "assistant", "content": wrong}],
            )
            rows.append({"chosen": chosen, "rejected": rejected})
        else:
            rows.append({"prompt": q, "chosen": right, "rejected": wrong})
    return _jsonl(path, rows)


def math_shepherd_file(path: Path) -> Path:
    rows = []
    for q, a, b in QUESTIONS * 3:
        for result, mark in ((a + b, "+"), (a * b, "-")):
            text = f"{q} Step 1: {a} + {b} = {result} ки\nStep 2: The answer is: {result} ки"
            rows.append({"input": text, "label": text.replace("ки", mark), "task": "GSM8K"})
    return _jsonl(path, rows)


def prm800k_file(path: Path) -> Path:
    rows = []
    for q, a, b in QUESTIONS * 3:
        steps = [
            {"completions": [{"text": "I add the two numbers.", "rating": 0, "flagged": None}], "chosen_completion": 0},
            {
                "completions": [
                    {"text": f"{a} + {b} = {a + b}", "rating": 1, "flagged": None},
                    {"text": f"{a} + {b} = {a * b}", "rating": -1, "flagged": False},
                ],
                "human_completion": None,
                "chosen_completion": 0,
            },
            {"completions": [{"text": f"# Answer\n\n{a + b}", "rating": 1, "flagged": None}], "chosen_completion": 0},
        ]
        rows.append(
            {
                "labeler": "e2e",
                "generation": 1,
                "is_quality_control_question": False,
                "question": {"problem": q, "ground_truth_answer": str(a + b)},
                "label": {"steps": steps, "total_time": 1, "finish_reason": "solution"},
            }
        )
    return _jsonl(path, rows)


def _train(trainer: str, out: Path, base: Path, dataset: Path, *extra: str) -> dict:
    argv = ["train", trainer, "--output-dir", str(out), "--base-model", str(base), "--dataset", str(dataset)]
    assert ponder([*argv, *FEW_STEPS, *extra]) == 0
    losses = [json.loads(line).get("loss") for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert [x for x in losses if x is not None] and all(math.isfinite(x) for x in losses if x is not None)
    assert not (out / "adapter_config.json").exists()  # adapters merged: a plain transformers folder
    assert (out / "chat_template.jinja").read_text().startswith("{% if bos_token %}")  # the plain template, saved
    card = (out / "README.md").read_text()  # the model card speaks of this run, not of the bundled policy
    assert f"learned from `{dataset}`" in card and f"initialised from `{base}`" in card and "bundled" not in card
    return json.loads((out / "training_config.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-verifiers")
    base = build_base_model(root / "base")
    orm = root / "orm"
    lora = ["--lora-r", "8", "--lora-target-modules", "q_proj", "v_proj"]  # TRL's RewardTrainer on a PeftModel
    config = _train("rm", orm, base, preference_pairs(root / "pairs.jsonl"), *lora)
    assert config["args"]["base_model"] == str(base) and config["data"]["train"]["pairs"] == 6
    shepherd = root / "prm-shepherd"
    config = _train("prm", shepherd, base, math_shepherd_file(root / "shepherd.jsonl"), "--lora-r", "4")
    assert config["data"]["train"] == {
        "source": str(root / "shepherd.jsonl"),
        "format": "math-shepherd",
        "solutions": 12,
        "steps": 24,
        "mean_target": 0.5,
    }
    assert any(note.startswith("LoRA (PEFT): rank 4") for note in config["data"]["notes"])
    prm800k = root / "prm-prm800k"
    config = _train("prm", prm800k, base, prm800k_file(root / "prm800k.jsonl"), "--dataset-format", "prm800k")
    assert config["data"]["train"]["format"] == "prm800k" and config["data"]["train"]["solutions"] == 12
    return {"base": base, "orm": orm, "shepherd": shepherd, "prm800k": prm800k}


@pytest.mark.parametrize(("name", "untouched"), [("shepherd", "embed_tokens"), ("orm", "self_attn.k_proj")])
def test_lora_trained_verifiers_are_plain_folders_with_the_adapters_merged(trained, name: str, untouched: str):
    import torch
    from safetensors.torch import load_file

    base = load_file(trained["base"] / "model.safetensors")
    merged = load_file(trained[name] / "model.safetensors")
    assert not any("lora" in k or "modules_to_save" in k for k in merged)
    assert "score.weight" in merged  # the new head, trained in full and saved under its own name
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[key], merged[key])  # the LoRA update is folded into the body's weights
    kept = [k for k in base if untouched in k]  # not a LoRA target: as the base model had it
    assert kept and all(torch.equal(base[k], merged[k]) for k in kept)


@pytest.fixture(scope="module")
def server(trained, tiny_model_dir, tmp_path_factory) -> str:
    argv = [PONDER, "serve", "--engine", "hf", "--model", str(tiny_model_dir), "--served-model-name", "tiny"]
    argv += ["--max-model-len", "512", "--no-default-verifiers"]
    for name in ("orm", "shepherd", "prm800k"):
        argv += ["--verifier", f"{name}={trained[name]}"]
    proc, url = start_server(argv, tmp_path_factory.mktemp("serve-real-verifiers") / "server.log")
    yield url
    stop_server(proc)


def _offline_scores(folder: Path, kind: str, messages: list[dict], texts: list[str]) -> list[float]:
    """The scores the trained folder gives, computed here in the test's process (PRM: min over its steps)."""
    import asyncio

    from ponder.verifiers.orm import OutcomeRewardModel
    from ponder.verifiers.prm import ProcessRewardModel

    verifier = OutcomeRewardModel(folder, device="cpu") if kind == "orm" else ProcessRewardModel(folder, device="cpu")

    async def score() -> list[float]:
        try:
            return await verifier.score(messages, texts)
        finally:
            await verifier.aclose()

    return asyncio.run(score())


def test_served_verifiers_rerank_best_of_n_through_the_openai_client(server, trained):
    listing = httpx.get(f"{server}/v1/verifiers", timeout=30).json()
    loaded = {v["name"]: v for v in listing["data"]}
    assert loaded["orm"]["kind"] == "orm" and not loaded["orm"]["is_step"]
    assert loaded["shepherd"]["kind"] == loaded["prm800k"]["kind"] == "prm" and loaded["shepherd"]["is_step"]
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": QUESTIONS[0][0]}]
    served = {}
    for name in ("orm", "shepherd", "prm800k"):
        resp = client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=12,
            temperature=1.0,
            seed=1,
            extra_body={"strategy": "best_of_n", "verifier": name, "budget": {"max_samples": 4}, "return_trace": True},
        )
        block = resp.model_extra["ponder"]
        assert block["strategy"] == "best_of_n" and block["verifier"] == name
        assert block["spent"]["verifier_calls"] == 1 and block["spent"]["samples"] == 4
        candidates = block["trace"]["candidates"]
        served[name] = [c["score"] for c in candidates]
        assert len(served[name]) == 4 and block["scores"][0] in served[name]
        if name != "orm":  # a PRM reports each step's score; the candidate's score is their minimum
            assert all(c["score"] == min(c["step_scores"]) for c in candidates)
        # the scores are the trained folder's own: recomputed here from the candidates' texts
        offline = _offline_scores(
            trained[name], "orm" if name == "orm" else "prm", messages, [c["text"] for c in candidates]
        )
        assert offline == pytest.approx(served[name], abs=1e-4)
    assert served["shepherd"] != pytest.approx(served["prm800k"], abs=1e-6)  # two different trained models
