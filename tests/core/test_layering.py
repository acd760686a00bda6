"""The core's layers import one way: no two subpackages (or modules) import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "shared"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "datashunt").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every datashunt module ``name`` imports, lazily or not (``TYPE_CHECKING`` included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            mod = (
                ".".join([*base, node.module] if node.module else base)
                if node.level
                else (node.module or "")
            )
            found |= {m for m in [mod, *(f"{mod}.{a.name}" for a in node.names)] if m in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found - {name}


def _subpackage(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_no_two_subpackages_import_each_other() -> None:
    known = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        for target in _imports(name, path, known):
            a, b = _subpackage(name), _subpackage(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
    both = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    assert both == [], f"subpackages importing each other: {both}"


def test_no_two_modules_import_each_other() -> None:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    pairs = sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if a < b and a in graph.get(b, set()) and not b.startswith(a + ".")
    )
    assert pairs == [], f"modules importing each other: {pairs}"
