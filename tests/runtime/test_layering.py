"""The import layers of docs/architecture.md: protocols ← persist_rt ← nodes ← reachability, bench.

A module may import its own layer and the layers below it, never one above: the runtime knows no
node, a node knows no offline solver or benchmark. Built-in node kinds are named by string
(persist_rt/kinds.py), so the runtime finds them without importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"protocols": 0, "persist_rt": 1, "nodes": 2, "reachability": 3, "bench": 4}


def imported_tops(source: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file, lazy imports included."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for top, rank in LAYER.items():
        for source in sorted((ROOT / top).rglob("*.py")):
            for imported, line in imported_tops(source):
                if LAYER.get(imported, -1) > rank:
                    upward.append(f"{source.relative_to(ROOT)}:{line} imports {imported}")
    assert not upward, "imports against the layers of docs/architecture.md:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import json\n\ndef later():\n    from nodes.env import gridlife\n")
    assert ("nodes", 4) in imported_tops(sample) and ("json", 1) in imported_tops(sample)
