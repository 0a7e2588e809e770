"""``recsys-mtl report <run>``: expert diagnostics (and, asked for, permutation importance) of a
run's selected checkpoint.

It sits above ``train/`` and ``diagnostics/`` because it reads a run folder (``train``) and
applies the statistics of ``diagnostics``; ``diagnostics`` itself stays below ``train``, whose
fit feeds it during training.

Reads the run folder written by :func:`recsys_mtl.train.fit.fit` (pipeline.yaml, spec.yaml,
preprocessing.json, the selected checkpoint), re-encodes the validation split with the fitted
preprocessing (the test split is never read), and writes ``<run>/report/diagnostics.json`` and
``<run>/report/diagnostics.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from recsys_mtl.artifacts import write_atomic
from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.tensors import features_only
from recsys_mtl.diagnostics.plot import plot_diagnostics
from recsys_mtl.diagnostics.stats import DiagnosticsAccumulator
from recsys_mtl.models import MultiTaskModel
from recsys_mtl.train.run_folder import load_run


@torch.no_grad()
def diagnose(model: MultiTaskModel, loader: ColumnBatchLoader, near_zero: float = 0.01) -> dict[str, Any]:
    acc = DiagnosticsAccumulator(model, near_zero)
    for batch in loader:
        model(features_only(batch))
        acc.update()
    return acc.result()


def importance_report(run_dir: str | Path, repeats: int = 3, batch_size: int = 8192) -> tuple[Path, Path, str]:
    """Permutation importance per task on the run's validation split (test never read):
    ``<run>/report/importance.json`` and ``.png``; returns (json, png, markdown table)."""
    from recsys_mtl.diagnostics.importance import importance_table, permutation_importance, plot_importance

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    valid = run.preprocessor.transform(data_source(run.cfg.data).valid(), "validation split")
    result = {"checkpoint": run.checkpoint, "split": "valid",
              **permutation_importance(run.model, run.spec.tasks, run.preprocessor.layout, valid, repeats, 0, batch_size)}
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    json_path = out / "importance.json"
    write_atomic(json_path, json.dumps(result, indent=1))
    png = out / "importance.png"
    plot_importance(result, png)
    return json_path, png, importance_table(result)


def report(run_dir: str | Path, batch_size: int = 8192) -> tuple[Path, Path]:
    """Write the diagnostics of the run's selected checkpoint on its validation split; returns (json, png)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    valid = run.preprocessor.transform(data_source(run.cfg.data).valid(), "validation split")
    result = {"checkpoint": run.checkpoint, "split": "valid", **diagnose(run.model, ColumnBatchLoader(valid, batch_size))}
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    json_path = out / "diagnostics.json"
    write_atomic(json_path, json.dumps(result, indent=1))
    png = plot_diagnostics(result, out / "diagnostics.png", f"{run_dir.name} — best checkpoint, validation split")
    return json_path, png
