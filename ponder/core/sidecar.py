"""The ``ponder.json`` sidecar a Ponder-trained model ships, its one reader, and where the bundled models live."""

from __future__ import annotations

import json
import os
from pathlib import Path

SIDECAR = "ponder.json"


def models_dir() -> Path:
    """Where the bundled models live: ``$PONDER_MODELS_DIR``, else ``ponder/models`` (package data of the wheel)."""
    env = os.environ.get("PONDER_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def default_model() -> str:
    """The bundled policy when it is shipped, else empty (the CLI then builds a tiny model)."""
    bundled = models_dir() / "policy"
    return str(bundled) if (bundled / "config.json").exists() else ""


def model_sidecar(model: str) -> dict:
    """The ``ponder.json`` a Ponder-trained model ships (step separator, think tags, answer format); {} if none."""
    path = Path(model) / SIDECAR if model else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data
