"""The wheel installs ``ponder`` alone and works outside the checkout: CLI, app, bundled models, no name clashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# Names the old layout installed at top level; PyPI has packages called ``verifiers``, ``core``, ``server``.
OLD_TOP_LEVEL = ("core", "engines", "server", "strategies", "verifiers", "training", "tasks", "eval", "bench", "cli")

pytestmark = pytest.mark.timeout(180)

PROBE = """
import importlib.util, json, sys
import ponder, ponder.server.app
from ponder.core.sidecar import default_model
clashes = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    clashes[name] = spec.origin if spec and spec.origin else (list(spec.submodule_search_locations) if spec else None)
print(json.dumps({"ponder": ponder.__file__, "default_model": default_model(), "clashes": clashes}))
"""


def _copy_sources(dest: Path) -> Path:
    """The files a build reads, copied so that building writes nothing (build/, egg-info) into the shared checkout."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "ponder", src / "ponder", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline without build isolation (the dev venv has setuptools)."""
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(work)
    dist = work / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist)]
    _run([*pip_wheel, str(src)], cwd=work)
    (found,) = dist.glob("ponder-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (not editable); the dependencies come from the dev venv.

    A ``.pth`` line appends the dev venv's site-packages after the new one's. The ``.pth`` files in there are not
    processed, so the dev install's editable finder stays off and ``ponder`` can only come from the wheel.
    """
    path = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=path.parent)
    python = path / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], cwd=path)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=path).stdout
    (Path(purelib.strip()) / "_ponder_dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path


def _env() -> dict[str, str]:
    drop = {"PYTHONPATH", "PONDER_MODELS_DIR", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_wheel_holds_the_ponder_package_alone(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top_level).decode().split() == ["ponder"]
    assert all(n.startswith(("ponder/", "ponder-")) for n in names), [n for n in names if not n.startswith("ponder")]
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/") or "/logs/" in n]
    for model in ("policy", "orm", "prm"):
        for part in ("config.json", "model.safetensors", "ponder.json", "tokenizer.json", "chat_template.jinja"):
            assert f"ponder/models/{model}/{part}" in names
    assert "ponder/server/router.json" in names and "ponder/server/effort_policy.json" in names  # serve's defaults


def test_installed_wheel_imports_from_its_own_site_packages(venv: Path, tmp_path: Path):
    python = venv / "bin" / "python"
    proc = _run([str(python), "-c", PROBE, *OLD_TOP_LEVEL], cwd=tmp_path, env=_env())
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(found["ponder"]).resolve().parents[1]
    assert site.is_relative_to(venv.resolve()) and site.name == "site-packages", found["ponder"]
    assert Path(found["default_model"]).resolve() == site / "ponder" / "models" / "policy"
    for name, origin in found["clashes"].items():
        # Not importable, or another distribution's package from the dev venv: nothing the wheel installed (the
        # new site-packages holds the wheel alone) and nothing from the checkout.
        paths = origin if isinstance(origin, list) else [origin] if origin else []
        for p in map(Path, paths):
            assert not p.resolve().is_relative_to(site), f"import {name} is satisfied by the wheel: {p}"
            assert not p.resolve().is_relative_to(ROOT), f"import {name} is satisfied by the checkout: {p}"


def test_installed_cli_runs(venv: Path, tmp_path: Path):
    ponder = str(venv / "bin" / "ponder")
    out = _run([ponder, "--help"], cwd=tmp_path, env=_env()).stdout
    assert "serve" in out and "eval" in out and "train" in out
    out = _run([ponder, "serve", "--help"], cwd=tmp_path, env=_env()).stdout
    assert "--model" in out and "--verifier" in out
