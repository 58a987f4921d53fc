"""The strategy reference: every built-in is registered and every option is documented."""

from __future__ import annotations

from ponder.cli.main import main
from ponder.strategies import registry
from ponder.strategies.describe import reference_markdown


def test_every_builtin_strategy_is_registered_and_documented():
    assert set(registry.BUILTIN) <= set(registry.names())
    for name in registry.BUILTIN:
        for key, field in registry.get(name).Options.model_fields.items():
            assert field.description, f"{name}.{key} has no description"


def test_reference_lists_every_strategy(capsys):
    text = reference_markdown()
    for name in registry.BUILTIN:
        assert f"### `{name}`" in text
    assert main(["strategies", "best_of_n"]) == 0
    out = capsys.readouterr().out
    assert "| `n_samples` |" in out and "\\|" in out  # union types escaped inside the table


def test_docs_reference_section_is_the_current_reference():
    from pathlib import Path

    from ponder.strategies.describe import with_reference

    doc = Path(__file__).parents[2] / "docs" / "strategies.md"
    text = doc.read_text()
    assert text == with_reference(text), "stale: run python -m ponder.strategies.describe docs/strategies.md"
