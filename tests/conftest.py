"""Shared fixtures: fake verifiers for strategy tests, a tiny Llama built in the session, a real vLLM upstream."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ponder.testing import RulePRM, TableVerifier

VLLM_START_TIMEOUT = 180.0


@pytest.fixture
def prm() -> RulePRM:
    """A step verifier scoring each step by its word (best 1, good .75, ok .5, bad .25, wrong 0, else .3).

    Step searches must ask it for step scores only: a whole-answer call fails the test.
    """
    return RulePRM(steps_only=True)


@pytest.fixture
def graded_prm() -> RulePRM:
    """A step verifier on a coarser scale: a step with "good" scores 0.9, "ok" 0.5, "bad" 0.1 (else 0.3); steps only."""
    return RulePRM({"good": 0.9, "ok": 0.5, "bad": 0.1}, steps_only=True)


@pytest.fixture
def orm() -> TableVerifier:
    """A whole-answer verifier that scores every answer 0.5 (a verifier that is not a PRM)."""
    return TableVerifier({}, default=0.5, name="orm")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama (head dim 64) with a char-level tokenizer and chat template."""
    from ponder.training.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server, then SIGKILL its process group (vLLM's engine workers) if anything is left."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group is this fixture's own (start_new_session)


@pytest.fixture(scope="session")
def vllm_upstream(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``vllm.entrypoints.openai.api_server`` (CPU) serving the tiny model; yields its base URL (no ``/v1``).

    It is started once per session, warmed up with one generation, and terminated at the end.
    Its log is kept in the session's temp folder and shown if it fails to start.
    """
    pytest.importorskip("vllm")
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("vllm-upstream") / "vllm.log"
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_model_dir),
        "--dtype", "float32",
        "--max-model-len", "512",
        "--enforce-eager",
        "--gpu-memory-utilization", "0.1",
        "--seed", "0",
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + VLLM_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM upstream exited with {proc.returncode}; log {log}:\n{log.read_text()[-6000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"vLLM upstream not healthy after {VLLM_START_TIMEOUT:.0f}s; log {log}:\n{log.read_text()[-6000:]}"
                )
            time.sleep(0.5)
        # The first generation is slow (warm-up); take it here so tests see steady timings.
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=180,
        ).raise_for_status()
        yield url
    finally:
        _stop_process_group(proc)
