"""The ``ponder.json`` sidecar of a Ponder-trained model: its schema, its one reader; where bundled models live."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SIDECAR = "ponder.json"


class SidecarError(ValueError):
    """A ``ponder.json`` that is not valid JSON or does not follow :class:`Sidecar`."""


class Sidecar(BaseModel):
    """What a model folder tells the server about itself; every field is optional.

    A policy says how it writes steps and answers and which verifier suits it; a verifier also says its kind
    and input format. Unknown keys are kept (newer trainers may write more) but never required.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str | None = Field(None, description="A verifier folder: orm or prm (checked by the verifier loader).")
    format: str | None = Field(None, description="A verifier's input layout, e.g. token_classification.")
    score: str | None = Field(None, description="How a PRM turns its logit into a step score, e.g. sigmoid.")
    step_separator: str | None = Field(None, description="What separates reasoning steps, e.g. a newline.")
    answer_format: str | None = Field(None, description="What follows the reasoning, e.g. final_number.")
    think_tags: tuple[str, str] | None = Field(None, description="The opening and closing reasoning tags.")
    default_verifier: str | None = Field(None, description="A policy's recommended verifier for its requests.")

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as plain JSON values (what older callers read as a dict)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if "think_tags" in data:
            data["think_tags"] = list(data["think_tags"])
        return data


def read_sidecar(folder: str | Path) -> Sidecar:
    """The folder's ``ponder.json`` (or the JSON file ``folder`` itself names); an empty :class:`Sidecar` when there
    is none, :class:`SidecarError` if bad."""
    path = Path(folder) if Path(folder).is_file() else Path(folder) / SIDECAR
    if not path.is_file():
        return Sidecar()
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SidecarError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SidecarError(f"{path} must hold a JSON object, got {type(data).__name__}")
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SidecarError(f"{path}: {problems}") from None


def model_sidecar(model: str) -> dict[str, Any]:
    """The sidecar of a served model as a dict ({} when it ships none, or when ``model`` is a hub id or a name an
    upstream server knows); ``model`` may also name a local copy of the sidecar file."""
    return read_sidecar(model).as_dict() if model else {}


def models_dir() -> Path:
    """Where the bundled models live: ``$PONDER_MODELS_DIR``, else ``ponder/models`` (package data of the wheel)."""
    env = os.environ.get("PONDER_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def default_model() -> str:
    """The bundled policy when it is shipped, else empty (the CLI then builds a tiny model)."""
    bundled = models_dir() / "policy"
    return str(bundled) if (bundled / "config.json").exists() else ""
