"""The shape of the package: imports go one way, no private names cross modules, imports are light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asif"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import anywhere in the module."""
    package = name if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists() else ""
    package = package or name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, [alias.name for alias in node.names]))
    return out


def test_no_module_takes_another_modules_private_names() -> None:
    offences = []
    for name, tree in _modules().items():
        for module, names in _imports(name, tree):
            if module.startswith("asif"):
                offences += [
                    f"{name}: from {module} import {n}" for n in names if n.startswith("_")
                ]
    assert offences == []


def test_the_import_graph_has_no_circle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for module, names in _imports(name, tree):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            targets = targets or ([module] if module in modules else [])
            graph[name] |= {t for t in targets if t != name and not name.startswith(t + ".")}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            pytest.fail("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize(
    "statement", ["import asif", "import asif.data", "from asif import AnchorSet"]
)
def test_import_asif_is_light(statement: str) -> None:
    code = f"import sys; {statement}; print(sorted(m for m in ('faiss', 'torch', 'timm', 'sentence_transformers') if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
