"""Real `ponder serve` processes on each engine, driven over HTTP."""

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

import httpx
import pytest

PONDER = str(Path(sys.executable).parent / "ponder")
START_TIMEOUT = 300
VLLM_START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log.read_text()[-4000:]}")


def start_server(argv: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start ``argv`` (with --port added), wait for /health, return the process and its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    with log.open("w") as out:
        proc = subprocess.Popen([*argv, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def ponder_server(request, tiny_model_dir, tmp_path_factory) -> Iterator:
    """Factory: a running `ponder serve` for an engine kind, started once per session and kind."""
    servers: dict[str, tuple[subprocess.Popen, str]] = {}

    def get(kind: str) -> str:
        if kind not in servers:
            log = tmp_path_factory.mktemp(f"ponder-{kind}") / "server.log"
            if kind == "bundled":  # `ponder serve` with its defaults: the bundled policy, ORM and PRM
                argv = [PONDER, "serve", "--engine", "vllm", "--served-model-name", "policy", "--block-size", "32"]
                argv += ["--max-model-len", "512", "--gpu-memory-utilization", "0.1", "--dtype", "float32"]
                servers[kind] = start_server(argv, log)
                return servers[kind][1]
            argv = [PONDER, "serve", "--engine", kind, "--served-model-name", "tiny", "--max-concurrency", "8"]
            if kind == "openai":
                argv += ["--upstream", f"{request.getfixturevalue('vllm_upstream')}/v1"]
            else:
                argv += ["--model", str(tiny_model_dir), "--max-model-len", "512"]
            if kind == "vllm":
                argv += ["--gpu-memory-utilization", "0.1", "--dtype", "float32", "--tool-call-parser", "hermes"]
            servers[kind] = start_server(argv, log)
        return servers[kind][1]

    yield get
    for proc, _url in servers.values():
        stop_server(proc)


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

    port = free_port()
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
        wait_healthy(url, proc, log, timeout=VLLM_START_TIMEOUT)
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
