"""The import rules of ARCHITECTURE.md, checked on the source: ``rag`` imports no other
package of the project (not even by a module name in a string); ``ingest``, ``eval`` and
``finetune`` import ``rag`` only; ``api`` imports ``rag`` and ``ingest``; ``cli`` may import
them all. Imports inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rag", "ingest", "api", "eval", "finetune", "cli")
ALLOWED: dict[str, set[str]] = {
    "rag": set(),
    "ingest": {"rag"},
    "eval": {"rag"},
    "finetune": {"rag"},
    "api": {"rag", "ingest"},
    "cli": {"rag", "ingest", "api", "eval", "finetune"},
}
_MODULE_STRING = re.compile(rf"^({'|'.join(PACKAGES)})(\.[a-z_]+)+$")


def project_imports(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in ``path``, however nested."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.add((top, node.lineno))
    return found


def module_strings(path: Path) -> set[tuple[str, int]]:
    """String constants that name a project module (what ``importlib`` would load)."""
    return {
        (node.value, node.lineno)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _MODULE_STRING.match(node.value)
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for top, line in project_imports(path)
        if top not in allowed
    ]
    assert bad == []


def test_the_core_names_no_other_package_even_by_string() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} names {value!r}"
        for path in sorted((ROOT / "rag").rglob("*.py"))
        for value, line in module_strings(path)
        if value.split(".")[0] != "rag"
    ]
    assert bad == []


def test_the_checker_sees_nested_and_string_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    from api.app import create_app\n    return 'eval.runner'\n",
        encoding="utf-8",
    )
    assert project_imports(sample) == {("api", 2)}
    assert module_strings(sample) == {("eval.runner", 3)}
