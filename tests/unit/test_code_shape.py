"""House style, checked: no function in ``ponder/`` runs over 60 lines, argparse parser builders excepted."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "ponder"
MAX_LINES = 60
# A parser definition is a flat list of add_argument calls: long, but splitting it would only scatter the flags.
PARSER_BUILDER = re.compile(r"add_parser|_add_\w*parser")


def long_functions(root: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function or method longer than ``limit`` lines, decorators included."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or PARSER_BUILDER.fullmatch(node.name):
                continue
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > limit:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_60_lines():
    found = long_functions()
    assert not found, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(found)


def test_the_check_sees_long_functions_and_spares_parser_builders(tmp_path: Path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(
        f"def long():\n{body}\nclass C:\n    async def method(self):\n{body.replace('    ', '        ')}\n"
        f"def add_parser(sub):\n{body}\ndef _add_strategies_parser(kinds):\n{body}\ndef short():\n    return 1\n"
    )
    assert long_functions(tmp_path) == [
        f"{tmp_path.name}/m.py:1 long ({MAX_LINES + 1} lines)",
        f"{tmp_path.name}/m.py:64 method ({MAX_LINES + 1} lines)",
    ]
