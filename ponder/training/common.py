"""Shared pieces of the trainers: input checks that refuse bad input early, output folders, logs, sidecars."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ponder.tasks.traces import ANSWER_FORMAT, STEP_SEPARATOR, THINK_CLOSE, THINK_OPEN

log = logging.getLogger("ponder.train")

ROLES = ("system", "user", "assistant")


class TrainingInputError(ValueError):
    """Input that a trainer refuses before it starts (the CLI prints it and exits with status 2)."""


def arithmetic_sidecar() -> dict[str, Any]:
    """What the server needs to know about a model trained on the arithmetic traces."""
    return {
        "step_separator": STEP_SEPARATOR,
        "answer_format": ANSWER_FORMAT,
        "think_tags": [THINK_OPEN, THINK_CLOSE],
    }


def policy_sidecar() -> dict[str, Any]:
    """The policy's ``ponder.json``: the arithmetic format, and the verifier requests get when they name none.

    The bundled generative PRM, because it measured best for this policy (docs/results/strategies.md): at 64 samples
    it leads six of the seven searches measured with both, the calculator included, and it reads only text.
    """
    return {**arithmetic_sidecar(), "default_verifier": "prm"}


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def prepare_output_dir(path: str | Path, *, overwrite: bool) -> Path:
    """Create the output folder; refuse a file, or a non-empty folder unless ``overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise TrainingInputError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise TrainingInputError(f"output folder {out} is not empty; pass --overwrite to replace its contents")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def attach_log_file(path: Path) -> logging.Handler:
    """Send the ``ponder`` and ``transformers`` logs (INFO and up) to ``path`` as well as the console."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in ("ponder", "transformers", "trl"):
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("ponder").setLevel(logging.INFO)
    if not logging.getLogger().handlers:  # used as a library: still show progress on the console
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(handler.formatter)
        logging.getLogger("ponder").addHandler(console)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    """Undo ``attach_log_file``."""
    for name in ("ponder", "transformers", "trl"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


@contextmanager
def training_run(output_dir: str | Path, *, overwrite: bool) -> Iterator[tuple[Path, logging.Handler]]:
    """The prepared output folder, with the logs also going to its ``logs/train.log`` until the run ends."""
    out = prepare_output_dir(output_dir, overwrite=overwrite)
    handler = attach_log_file(out / "logs" / "train.log")
    try:
        yield out, handler
    finally:
        detach_log_file(handler)


def log_callback(path: Path, handler: logging.Handler) -> Any:
    """A ``TrainerCallback`` that appends every log record (loss, lr, ...) to a JSONL file and the log file.

    The console already shows them (the Trainer prints each record above its progress bar).
    """
    from transformers import TrainerCallback

    metrics_log = logging.getLogger("ponder.train.metrics")
    metrics_log.propagate = False
    metrics_log.setLevel(logging.INFO)
    if handler not in metrics_log.handlers:
        metrics_log.handlers = [handler]

    class JsonlLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                record = {"step": state.global_step, **logs}
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                metrics_log.info("%s", json.dumps(record))

    return JsonlLog()


def versions() -> dict[str, str]:
    """The versions of the libraries a training run depends on, for ``training_config.json``."""
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("torch", "transformers", "trl", "reasoning-gym")}


def check_model_dir(path: str | Path) -> Path:
    """Refuse a folder that is not a Hugging Face causal LM with a chat-templated tokenizer."""
    folder = Path(path)
    if not folder.is_dir():
        raise TrainingInputError(f"model folder {folder} does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TrainingInputError(f"{folder} is not a model folder: it has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingInputError(f"{config_path} is not valid JSON: {exc}") from None
    architectures = config.get("architectures") or []
    if "model_type" not in config or not any(a.endswith("ForCausalLM") for a in architectures):
        raise TrainingInputError(f"{folder} is not a causal language model (architectures: {architectures or 'none'})")
    if not any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")) and not any(
        folder.glob("model-*.safetensors")
    ):
        raise TrainingInputError(f"{folder} has a config.json but no weights (model.safetensors)")
    if not (folder / "tokenizer_config.json").is_file():
        raise TrainingInputError(f"{folder} has no tokenizer (tokenizer_config.json)")
    return folder


def check_messages(rows: list[Any], source: str) -> None:
    """Refuse chat rows that are not lists of {role, content} turns ending with an assistant turn."""
    if not rows:
        raise TrainingInputError(f"{source}: no rows")
    for i, turns in enumerate(rows):
        where = f"{source}: row {i}: `messages`"
        if not isinstance(turns, list) or not turns:
            raise TrainingInputError(f"{where} must be a non-empty list of turns")
        for turn in turns:
            if not isinstance(turn, dict) or set(turn) - {"role", "content"} or {"role", "content"} - set(turn):
                raise TrainingInputError(f"{where} must hold {{role, content}} objects, got {turn!r:.80}")
            if turn["role"] not in ROLES or not isinstance(turn["content"], str):
                raise TrainingInputError(f"{where}: role must be one of {list(ROLES)} and content a string")
        if turns[-1]["role"] != "assistant":
            raise TrainingInputError(f"{where} must end with an assistant turn (the one the loss is on)")


def load_table(path: str | Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSONL / JSON / Parquet file; refuse a missing file, an unknown format or missing columns."""
    file = Path(path)
    if not file.is_file():
        raise TrainingInputError(f"dataset file {file} does not exist")
    suffix = file.suffix.lower()
    if suffix in (".jsonl", ".json"):
        text = file.read_text()
        try:
            if suffix == ".json" and text.lstrip().startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise TrainingInputError(
                f"{file} is not valid JSON{' lines' if suffix == '.jsonl' else ''}: {exc}"
            ) from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(file).to_pylist()
    else:
        raise TrainingInputError(f"{file}: unsupported format {suffix!r}; use .jsonl, .json or .parquet")
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise TrainingInputError(f"{file}: expected a non-empty list of objects (one per row)")
    columns = set(rows[0])
    missing = [c for c in required if any(c not in r for r in rows)]
    if missing:
        raise TrainingInputError(f"{file}: missing column(s) {missing}; found {sorted(columns)}")
    return rows
