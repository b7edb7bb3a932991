"""The modules' imports point one way: no two modules import each other, at the top or deferred
inside a function (a deferred import that dodges a circle is still a circle), and the modules
that once formed one import cleanly in any order."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "producers")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports anywhere in it (top level or inside a function)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def unit(module: str, known: dict[str, Path]) -> str:
    """A subpackage is one unit (worker.delivery, worker.ops, ...); a top-level module is its own."""
    parts = module.split(".")
    package = ".".join(parts[:2])
    return package if len(parts) > 2 or known[package].name == "__init__.py" else module


def test_no_two_modules_or_packages_import_each_other() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = graph.setdefault(unit(name, known), set())
        for other in imported(path, known):
            if not name.startswith(f"{other}.") and unit(other, known) != unit(name, known):
                edges.add(unit(other, known))  # a module importing its own package is no circle
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"an import circle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize(
    "module",
    ["worker.services", "worker.tasks", "worker.web.api", "producers.cli", "worker.ops.health"],
)
def test_a_module_once_in_a_circle_imports_first(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
