"""Real `ponder serve` processes on each engine, driven over HTTP."""

from __future__ import annotations

import os
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
                argv += ["--gpu-memory-utilization", "0.1", "--dtype", "float32"]
            servers[kind] = start_server(argv, log)
        return servers[kind][1]

    yield get
    for proc, _url in servers.values():
        stop_server(proc)
