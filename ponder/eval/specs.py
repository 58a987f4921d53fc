"""Run specs: what one evaluation run sends, from flags, ``--run NAME:k=v,...``, ``--sweep k=v1,v2`` or a runs file."""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Fields the openai SDK takes as keyword arguments; everything else travels in ``extra_body``.
SDK_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "user",
    }
)
EXTENSION_FIELDS = frozenset(
    {
        "strategy",
        "strategy_options",
        "verifier",
        "budget",
        "thinking_level",
        "thinking_budget",
        "return_trace",
        "include_reasoning",
    }
)
BUDGET_KEYS = ("max_samples", "max_tokens", "max_seconds")
# Short spellings, the same words as the ``--budget-*`` flags.
ALIASES = {
    "budget_samples": "budget.max_samples",
    "budget_tokens": "budget.max_tokens",
    "budget_seconds": "budget.max_seconds",
}
# ``body.KEY`` sends a field this list does not know (the server ignores unknown fields, so a typo would be silent).
RAW_PREFIX = "body."
META_KEYS = ("name", "series", "sweep")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class SpecError(ValueError):
    """A run spec, sweep or runs file that cannot be understood; the message says what and where."""


@dataclass
class RunSpec:
    """One evaluation run: a name, the plot series it belongs to, its label there, and the request fields."""

    name: str
    body: dict[str, Any] = field(default_factory=dict)
    series: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        self.series = self.series or self.name

    def request_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(SDK keyword arguments, ``extra_body``) for ``client.chat.completions.create``."""
        kwargs = {k: v for k, v in self.body.items() if k in SDK_FIELDS}
        extra = {k: v for k, v in self.body.items() if k not in SDK_FIELDS}
        return kwargs, extra


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets, braces and quotes, so JSON values may hold commas."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false/null, objects, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def normalize_key(key: str) -> str:
    """The dotted body path of ``key``; SpecError for a field the server does not have."""
    key = key.strip().replace("-", "_") if not key.startswith(RAW_PREFIX) else key.strip()
    key = ALIASES.get(key, key)
    if key.startswith(RAW_PREFIX):
        if len(key) == len(RAW_PREFIX):
            raise SpecError("'body.' needs a field name after it")
        return key[len(RAW_PREFIX) :]
    head, _, rest = key.partition(".")
    if head == "stream":
        raise SpecError("stream is not supported by ponder eval (it grades whole answers)")
    if head not in SDK_FIELDS and head not in EXTENSION_FIELDS:
        known = sorted(SDK_FIELDS | EXTENSION_FIELDS | set(ALIASES))
        raise SpecError(f"unknown request field {key!r}; known: {', '.join(known)} (or body.FIELD to send any field)")
    if rest and head not in ("budget", "strategy_options"):
        raise SpecError(f"{head!r} has no sub-fields (got {key!r})")
    if head == "budget" and rest and rest not in BUDGET_KEYS:
        raise SpecError(f"unknown budget field {rest!r}; valid: {', '.join(BUDGET_KEYS)}")
    return key


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; ``None`` removes the field (so a run can unset a default), except inside
    ``strategy_options``, where null is a value options take (``stop_agreement: null`` turns early stopping off)."""
    *parents, last = path.split(".")
    node = body
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is None and parents[:1] != ["strategy_options"]:
        node.pop(last, None)
    else:
        node[last] = value


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied as dotted paths (nested dicts merge key by key)."""
    out = copy.deepcopy(base)
    for path, value in flatten(overrides).items():
        set_path(out, normalize_key(path), value)
    return prune(out)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ``budget`` / ``strategy_options`` dicts as dotted keys; other values stay whole."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path in ("budget", "strategy_options") and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def prune(body: dict[str, Any]) -> dict[str, Any]:
    """Drop empty ``budget`` objects left after unsetting all of their fields."""
    if body.get("budget") == {}:
        del body["budget"]
    return body


def check_body(body: dict[str, Any]) -> dict[str, Any]:
    """Shape checks the server would otherwise answer with a 400 on every problem."""
    options = body.get("strategy_options")
    if options is not None and not isinstance(options, dict):
        raise SpecError(f"strategy_options must be a JSON object, got {options!r}")
    budget = body.get("budget")
    if budget is not None and not isinstance(budget, dict):
        raise SpecError(f"budget must be an object with {', '.join(BUDGET_KEYS)}, got {budget!r}")
    return body


def parse_assignments(text: str, where: str) -> dict[str, Any]:
    """``k=v,k=v`` (values JSON or bare text) as a flat dict of dotted paths."""
    out: dict[str, Any] = {}
    for part in split_top(text):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"{where}: expected key=value, got {part!r}")
        normalize_key(key)  # fail here, naming the flag, rather than later
        out[key.strip()] = parse_value(value.strip())
    return out


def check_name(name: str, where: str) -> str:
    if not NAME_RE.match(name):
        raise SpecError(
            f"{where}: run name {name!r} must start with a letter or digit and use only A-Z a-z 0-9 . _ - + ="
        )
    return name


def parse_run(text: str, defaults: dict[str, Any] | None = None) -> RunSpec:
    """``NAME:key=value,key=value`` (or just ``NAME``) on top of ``defaults``."""
    name, colon, rest = text.partition(":")
    name = check_name(name.strip(), f"--run {text!r}")
    overrides = parse_assignments(rest, f"--run {text!r}") if colon else {}
    return RunSpec(name=name, body=check_body(merge(defaults or {}, overrides)))


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` as (dotted path, values)."""
    key, eq, values = text.partition("=")
    if not eq or not key.strip():
        raise SpecError(f"--sweep {text!r}: expected key=v1,v2,...")
    items = [parse_value(v) for v in split_top(values) if v]
    if not items:
        raise SpecError(f"--sweep {text!r}: no values")
    return normalize_key(key), items


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def expand(run: RunSpec, sweeps: list[tuple[str, list[Any]]]) -> list[RunSpec]:
    """One run per point of the sweeps' product, named ``NAME.key=value,key=value``.

    The last sweep gives the points of a plot line (the label); earlier sweeps, and a sweep the run already went
    through, split it into separate lines (the series).
    """
    if not sweeps:
        return [run]
    base_series = f"{run.series}.{run.label}" if run.label else run.series
    out = []
    for values in itertools.product(*(vals for _, vals in sweeps)):
        body = copy.deepcopy(run.body)
        tags = []
        for (path, _), value in zip(sweeps, values, strict=True):
            set_path(body, path, value)
            tags.append(f"{path.rsplit('.', 1)[-1]}={_value_text(value)}")
        series = ".".join([base_series, *tags[:-1]])
        name = f"{run.name}.{','.join(tags)}"
        out.append(RunSpec(name=name, body=check_body(prune(body)), series=series, label=tags[-1]))
    return out


def load_runs_file(path: str | Path, defaults: dict[str, Any]) -> tuple[list[RunSpec], list[tuple[str, list[Any]]]]:
    """A JSON or YAML file: a list of runs, or ``{defaults, sweep, runs}``; each run has ``name`` and fields.

    A run may carry its own ``sweep: {key: [values]}`` and ``series``; a top-level ``sweep`` applies to all runs.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read runs file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpecError("YAML runs files need PyYAML (pip install pyyaml); or write the file as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: invalid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, list):
        data = {"runs": data}
    unknown = set(data) - {"defaults", "sweep", "runs"} if isinstance(data, dict) else set()
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {sorted(unknown)}; valid: defaults, sweep, runs")
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise SpecError(f"{path}: expected a list of runs or an object with a non-empty 'runs' list")
    file_defaults = merge(defaults, _mapping(data.get("defaults") or {}, f"{path}: defaults"))
    runs: list[RunSpec] = []
    for i, entry in enumerate(data["runs"]):
        where = f"{path}: runs[{i}]"
        entry = dict(_mapping(entry, where))
        name = entry.pop("name", None)
        if not isinstance(name, str):
            raise SpecError(f"{where}: every run needs a 'name'")
        series = entry.pop("series", "")
        own_sweep = _sweeps(entry.pop("sweep", None) or {}, f"{where}.sweep")
        run = RunSpec(name=check_name(name, where), body=check_body(merge(file_defaults, entry)), series=str(series))
        runs.extend(expand(run, own_sweep))
    return runs, _sweeps(data.get("sweep") or {}, f"{path}: sweep")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected an object, got {type(value).__name__}")
    try:
        for key in value:
            if key not in META_KEYS:
                normalize_key(str(key))
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return value


def _sweeps(value: Any, where: str) -> list[tuple[str, list[Any]]]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected {{key: [values]}}")
    out = []
    for key, values in value.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}.{key}: expected a non-empty list of values")
        out.append((normalize_key(key), values))
    return out


def build_runs(
    defaults: dict[str, Any],
    run_texts: list[str],
    sweep_texts: list[str],
    runs_file: str | None = None,
    default_name: str = "default",
) -> list[RunSpec]:
    """All runs of one invocation: file runs, then ``--run`` runs (or one default run), each expanded by sweeps."""
    defaults = check_body(merge({}, defaults))
    sweeps = [parse_sweep(s) for s in sweep_texts]
    base: list[RunSpec] = []
    if runs_file:
        file_runs, file_sweeps = load_runs_file(runs_file, defaults)
        base.extend(file_runs)
        sweeps = file_sweeps + sweeps
    base.extend(parse_run(t, defaults) for t in run_texts)
    if not base:
        base = [RunSpec(name=check_name(default_name, "--name"), body=defaults)]
    runs = [r for run in base for r in expand(run, sweeps)]
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise SpecError(f"two runs are named {run.name!r}; names must be unique")
        seen.add(run.name)
    return runs
