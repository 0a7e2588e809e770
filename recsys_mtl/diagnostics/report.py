"""``recsys-mtl report <run>``: expert diagnostics of a run's selected checkpoint.

Reads the run folder written by :func:`recsys_mtl.train.run.fit` (pipeline.yaml, spec.yaml,
preprocessing.json, checkpoints/best.ckpt), re-encodes the validation split with the fitted
preprocessing (the test split is never read), and writes ``<run>/report/diagnostics.json`` and
``<run>/report/diagnostics.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.tensors import features_only
from recsys_mtl.diagnostics.plot import plot_diagnostics
from recsys_mtl.diagnostics.stats import DiagnosticsAccumulator
from recsys_mtl.errors import DataError
from recsys_mtl.models import ModelContext, MultiTaskModel, build_model
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import load_spec, validate
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.run import write_atomic


@dataclass
class LoadedRun:
    cfg: PipelineConfig
    spec: FeatureSpec
    preprocessor: Preprocessor
    model: MultiTaskModel


def load_run(run_dir: str | Path, checkpoint: str = "best.ckpt") -> LoadedRun:
    """The run's pipeline, spec, fitted preprocessing and model with the checkpoint's weights (eval mode)."""
    run_dir = Path(run_dir)
    pipeline_path = run_dir / "pipeline.yaml"
    if not pipeline_path.is_file():
        raise DataError(f"{run_dir}: not a run folder (no pipeline.yaml)")
    cfg = validate(PipelineConfig, yaml.safe_load(pipeline_path.read_text()), pipeline_path)
    spec = load_spec(run_dir / "spec.yaml")
    pre = Preprocessor.load(run_dir / "preprocessing.json", spec)
    model = build_model(cfg.model.name, cfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
    ckpt = run_dir / "checkpoints" / checkpoint
    if not ckpt.is_file():
        raise DataError(f"{ckpt}: checkpoint not found")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    # the LightningModule holds the model as ``model``; metrics and balancer state are not needed
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model.eval()
    return LoadedRun(cfg, spec, pre, model)


@torch.no_grad()
def diagnose(model: MultiTaskModel, loader: ColumnBatchLoader, near_zero: float = 0.01) -> dict[str, Any]:
    acc = DiagnosticsAccumulator(model, near_zero)
    for batch in loader:
        model(features_only(batch))
        acc.update()
    return acc.result()


def report(run_dir: str | Path, batch_size: int = 8192) -> tuple[Path, Path]:
    """Write the diagnostics of the run's best checkpoint on its validation split; returns (json, png)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    valid = run.preprocessor.transform(load_splits(run.cfg.data).valid, "validation split")
    result = {"checkpoint": "checkpoints/best.ckpt", "split": "valid", **diagnose(run.model, ColumnBatchLoader(valid, batch_size))}
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    json_path = out / "diagnostics.json"
    write_atomic(json_path, json.dumps(result, indent=1))
    png = plot_diagnostics(result, out / "diagnostics.png", f"{run_dir.name} — best checkpoint, validation split")
    return json_path, png
