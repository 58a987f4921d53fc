"""A policy tuned by `ponder train dpo` with LoRA (adapters merged on save) is served by `ponder serve` as it is."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from ponder.cli.main import main as ponder
from ponder.tasks import generate_problems, render_trace
from tests.e2e.conftest import PONDER, start_server, stop_server

pytestmark = pytest.mark.e2e


def test_a_dpo_lora_policy_serves_with_its_reasoning_split_off(tmp_path: Path):
    pairs = tmp_path / "pairs.jsonl"
    rows = []
    for p in generate_problems("train", 4, [1]):
        right = render_trace(p)
        rows.append({"prompt": p.question, "chosen": right, "rejected": right[: -len(p.answer)] + p.answer + "0"})
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo"
    argv = ["train", "dpo", "--output-dir", str(out), "--dataset", str(pairs), "--max-steps", "2", "--batch-size", "2"]
    assert ponder([*argv, "--lora-r", "4", "--threads", "2"]) == 0

    serve = [PONDER, "serve", "--engine", "hf", "--model", str(out), "--served-model-name", "tuned"]
    serve += ["--max-model-len", "512", "--no-default-verifiers", "--verifier", "calculator"]
    proc, url = start_server(serve, tmp_path / "server.log")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        problem = generate_problems("test", 1, [1])[0]
        resp = client.chat.completions.create(
            model="tuned", messages=problem.prompt_messages(), max_tokens=64, temperature=0
        )
        message = resp.choices[0].message
        assert resp.choices[0].finish_reason == "stop"
        assert message.model_extra.get("reasoning_content")  # the think block, split off as the sidecar says
        assert message.content and "<think>" not in message.content and "</think>" not in message.content
        best = client.chat.completions.create(
            model="tuned",
            messages=problem.prompt_messages(),
            max_tokens=64,
            extra_body={"strategy": "best_of_n", "verifier": "calculator", "budget": {"max_samples": 4}},
        )
        assert best.model_extra["ponder"]["verifier"] == "calculator"
    finally:
        stop_server(proc)


def test_rft_searches_through_a_running_servers_api(ponder_server, tiny_model_dir: Path, tmp_path: Path):
    url = ponder_server("hf")  # serves tiny_model_dir, the policy this run starts from
    out = tmp_path / "rft"
    argv = ["train", "rft", "--output-dir", str(out), "--policy", str(tiny_model_dir), "--server", f"{url}/v1"]
    argv += ["--rounds", "1", "--problems", "3", "--samples", "2", "--max-new-tokens", "16", "--verifier", "calculator"]
    argv += ["--accept", "verifier", "--threshold", "0", "--max-steps", "1", "--batch-size", "2", "--threads", "2"]
    assert ponder(argv) == 0  # a random tiny model answers nonsense: every answer is kept at threshold 0
    config = json.loads((out / "training_config.json").read_text())
    assert config["search"]["server"] == f"{url}/v1" and config["rounds"][0]["kept"] == 3
    kept = [json.loads(line) for line in (out / "rounds" / "1" / "kept.jsonl").read_text().splitlines()]
    assert [m["messages"][0]["role"] for m in kept] == ["user"] * 3
    assert (out / "model.safetensors").is_file()
