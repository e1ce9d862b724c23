"""The shape the code keeps: small modules and functions, one-way imports, public seams for tests.

These guard what review found once (a config module of 881 lines, the simulator in the
exporter's import graph, tests reaching into the scheduler's private job table) from coming back unnoticed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCT = sorted((REPO / "exporter").rglob("*.py")) + sorted((REPO / "entra_simulator").glob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name}"


def test_the_exporter_does_not_import_the_simulator() -> None:
    # --demo imports it when asked; serving, --once and --check-config never load it.
    code = "import sys, exporter.cli; print(sorted(m for m in sys.modules if 'simulator' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


def private_attribute_uses(tree: ast.AST) -> list[str]:
    """Attributes with a leading underscore on anything but ``self`` or ``cls`` (dunders allowed)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted((REPO / "tests").glob("*.py")), ids=lambda p: p.name)
def test_tests_use_no_private_attribute_of_another_module(path: Path) -> None:
    assert private_attribute_uses(ast.parse(path.read_text())) == []


def test_the_private_attribute_check_finds_one() -> None:
    assert private_attribute_uses(ast.parse("pipeline.scheduler._jobs['x']")) == ["1: ._jobs"]
