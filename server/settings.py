"""Server settings: the `ponder serve` flags, fixed at start-up and never written per request."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


def models_dir() -> Path:
    """Where the bundled models live: ``$PONDER_MODELS_DIR``, else the source checkout's ``models/``."""
    env = os.environ.get("PONDER_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def default_model() -> str:
    """The bundled policy when it is shipped, else empty (the CLI then builds a tiny model)."""
    bundled = models_dir() / "policy"
    return str(bundled) if (bundled / "config.json").exists() else ""


def model_sidecar(model: str) -> dict:
    """The ``ponder.json`` a Ponder-trained model ships (step separator, think tags, answer format); {} if none."""
    path = Path(model) / "ponder.json" if model else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


@dataclass(frozen=True)
class EngineSettings:
    """Which engine to run and the arguments passed through to it."""

    kind: str = "auto"  # auto | vllm | hf | openai
    model: str = ""
    served_model_names: tuple[str, ...] = ()
    upstream: str | None = None
    upstream_api_key: str | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool | None = None
    block_size: int | None = None  # KV-cache block: prefix-cache hits come in whole blocks
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    max_concurrency: int = 64
    max_n: int = 32
    max_stop: int = 16
    max_body_bytes: int = 4 * 1024 * 1024
    max_samples: int = 64
    max_tokens: int = 65536
    max_seconds: float = 300.0


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)
    limits: Limits = field(default_factory=Limits)
    reasoning_parser: str = "think"  # think | none
    verifiers: tuple[str, ...] = ()  # --verifier NAME=PATH[:KIND] specs, loaded besides the bundled defaults
    default_verifiers: bool = True  # load the bundled ORM/PRM and the built-in rule and judge verifiers
    default_verifier: str | None = None  # what a request without `verifier` gets; None: the model's sidecar, else prm
    default_strategy: str | None = None  # what reasoning_effort low/medium/high runs; None: by verifiers loaded
    log_level: str = "info"
