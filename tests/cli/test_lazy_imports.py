"""Start-up cost: importing a command's module loads only what that command needs.

Each case imports modules in a fresh interpreter and lists which heavy packages ended up in
``sys.modules``; re-adding an eager import (e.g. ``import lightning`` at the top of a module that
``recsys-mtl export`` reaches) fails here. Find the culprit with ``python -X importtime -c 'import M'``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

#: (modules imported, heavy packages that must stay out of sys.modules)
CASES = {
    # the CLI parser and --help: every command's module is imported by its handler only
    "cli": (["recsys_mtl.cli"],
            ["torch", "lightning", "torchmetrics", "scipy", "matplotlib", "optuna", "ray", "mlflow", "onnx", "polars"]),
    # export, report and split run no training: no Lightning, and export/split draw no metrics or plots
    "export-report-split": (["recsys_mtl.export", "recsys_mtl.diagnostics_report", "recsys_mtl.evaluate.split"],
                            ["lightning", "torchmetrics", "scipy", "optuna", "ray", "mlflow"]),
}


def loaded(modules: list[str], heavy: list[str]) -> list[str]:
    """The packages of ``heavy`` that importing ``modules`` in a fresh interpreter loads."""
    code = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(h for h in {heavy!r} if h in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", [pytest.param("cli"), pytest.param("export-report-split", marks=pytest.mark.slow)])
def test_heavy_packages_stay_unloaded(case: str) -> None:
    modules, heavy = CASES[case]
    assert loaded(modules, heavy) == [], f"importing {modules} loads heavy packages its commands do not need"


def test_the_check_sees_an_eager_import() -> None:
    """The probe itself works: a module that does import a heavy package is reported."""
    assert loaded(["argparse", "json"], ["json", "argparse", "optuna"]) == ["argparse", "json"]
