"""Human-readable reference of the registered strategies and their options (``ponder strategies``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from pydantic.fields import FieldInfo

from ponder.strategies import registry

NEEDS = {  # a strategy's class flags, and how the reference words them
    "needs_verifier": "a verifier",
    "needs_step_verifier": "a step verifier (PRM)",
    "needs_prefix_continuation": "an engine that continues partial turns",
}


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if inspect.isclass(annotation) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("ponder.strategies.compute_optimal.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "null" if value is None else repr(value)


def strategy_markdown(name: str) -> str:
    """One strategy: its summary line, its needs, and a table of its options."""
    cls = registry.get(name)
    doc = inspect.getdoc(cls) or ""
    needs = [label for flag, label in NEEDS.items() if getattr(cls, flag, False)]
    lines = [f"### `{name}`", "", doc.split("\n\n")[0].replace("\n", " "), ""]
    if needs:
        lines += [f"Needs {', '.join(needs)}.", ""]
    fields = cls.Options.model_fields
    if not fields:
        return "\n".join([*lines, "No options.", ""])
    lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
    for key, field in fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        kind = _type_name(field.annotation).replace("|", "\\|")
        lines.append(f"| `{key}` | `{kind}` | `{_default(field)}` | {meaning} |")
    return "\n".join([*lines, ""])


def reference_markdown(names: Iterable[str] | None = None) -> str:
    """Every registered strategy (or those of ``names``), alphabetically."""
    return "\n".join(strategy_markdown(name) for name in sorted(registry.names() if names is None else names))


START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def with_reference(document: str) -> str:
    """``document`` with the text between its reference markers replaced by the built-ins' current reference."""
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{reference_markdown(registry.BUILTIN)}{END}{tail}"


if __name__ == "__main__":  # python -m ponder.strategies.describe docs/strategies.md: refresh the reference section
    import sys
    from pathlib import Path

    for name in sys.argv[1:]:
        path = Path(name)
        path.write_text(with_reference(path.read_text()))
