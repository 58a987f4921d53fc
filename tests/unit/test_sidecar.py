"""The one ``ponder.json`` reader: schema checks, clear errors, and the bundled-models lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ponder.core.sidecar import Sidecar, SidecarError, default_model, model_sidecar, models_dir, read_sidecar


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ponder.json").write_text(text)
    return folder


def test_absent_sidecar_is_empty(tmp_path: Path) -> None:
    assert read_sidecar(tmp_path) == Sidecar()
    assert model_sidecar(str(tmp_path)) == {}
    assert model_sidecar("") == {}  # a hub id or no model: nothing to read


def test_reads_fields_and_keeps_unknown_keys(tmp_path: Path) -> None:
    data = {"kind": "prm", "format": "token_classification", "think_tags": ["<t>", "</t>"], "extra": 3}
    sidecar = read_sidecar(_write(tmp_path, json.dumps(data)))
    assert (sidecar.kind, sidecar.format, sidecar.think_tags) == ("prm", "token_classification", ("<t>", "</t>"))
    assert model_sidecar(str(tmp_path)) == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object, got list"),
        ('{"think_tags": ["<think>"]}', "think_tags"),
        ('{"step_separator": 3}', "step_separator"),
    ],
)
def test_bad_sidecar_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SidecarError, match=message):
        read_sidecar(_write(tmp_path, text))


@pytest.mark.parametrize("name", ["policy", "orm", "prm"])
def test_bundled_sidecars_follow_the_schema(name: str) -> None:
    folder = models_dir() / name
    if not folder.is_dir():
        pytest.skip(f"no bundled {name}")
    assert read_sidecar(folder).think_tags == ("<think>", "</think>")


def test_models_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    assert default_model() == ""  # no policy there
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text("{}")
    assert default_model() == str(tmp_path / "policy")
