"""Functions that fit on a screen: no function or method in the checked rooms is longer than MAX_LINES
(``def`` line to last line, docstring included). Rooms join the list as they are brought under the limit."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("release", "takedown")
MAX_LINES = 60


def long_functions(path: Path, limit: int = MAX_LINES, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{path.relative_to(root)}:{node.lineno}: {node.name} is {n} lines (limit {limit})")
    return out


def test_no_long_functions_in_checked_rooms():
    files = [p for room in CHECKED for p in sorted((REPO / room).rglob("*.py"))]
    assert len(files) > 10
    found = [hit for p in files for hit in long_functions(p)]
    assert not found, "split these into named steps:\n" + "\n".join(found)


def test_the_check_sees_nested_and_method_bodies(tmp_path):
    path = tmp_path / "probe.py"
    body = "\n".join(f"        x{k} = {k}" for k in range(8))
    path.write_text(f"class A:\n    def m(self):\n{body}\n        return 0\n", encoding="utf-8")
    assert long_functions(path, limit=5, root=tmp_path) == ["probe.py:2: m is 10 lines (limit 5)"]
    assert long_functions(path, limit=10, root=tmp_path) == []
