"""The tests' own layout: test modules live in an area folder, helpers in tests/support, and
nothing imports the conftest or another test module (so a module can move without breaking others)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

TESTS = ROOT / "tests"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_test_modules_live_in_an_area_folder() -> None:
    loose = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not loose, f"move these into the tests/<area>/ folder of the code they test: {loose}"
    for folder in {p.parent for p in TESTS.rglob("test_*.py")}:
        assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)} needs an __init__.py (same-named modules)"


def test_nothing_imports_the_conftest_or_a_test_module() -> None:
    bad = {}
    for path in TESTS.rglob("*.py"):
        wrong = sorted(m for m in _imported_modules(path)
                       if m == "tests.conftest" or m.split(".")[-1].startswith("test_"))
        if wrong:
            bad[str(path.relative_to(ROOT))] = wrong
    assert not bad, f"import helpers from tests.support instead: {bad}"
