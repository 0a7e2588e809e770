"""Reading a run folder back: pipeline, spec, fitted preprocessing and the trained model.

The one loader that export, diagnostics and any later consumer of a run share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import DataError
from recsys_mtl.models import ModelContext, MultiTaskModel, build_model
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import load_spec, validate
from recsys_mtl.spec.pipeline import PipelineConfig


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: PipelineConfig
    spec: FeatureSpec
    preprocessor: Preprocessor
    model: MultiTaskModel


def load_run(run_dir: str | Path, checkpoint: str = "checkpoints/best.ckpt") -> LoadedRun:
    """Rebuild a run's model with the checkpoint's weights (eval mode), and its preprocessing."""
    run_dir = Path(run_dir)
    for name in ("pipeline.yaml", "spec.yaml", "preprocessing.json", checkpoint):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir}: not a complete run folder ({name} is missing)")
    pipeline_path = run_dir / "pipeline.yaml"
    cfg = validate(PipelineConfig, yaml.safe_load(pipeline_path.read_text()), pipeline_path)
    spec = load_spec(run_dir / "spec.yaml")
    pre = Preprocessor.load(run_dir / "preprocessing.json", spec)
    model = build_model(cfg.model.name, cfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
    state = torch.load(run_dir / checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    # the LightningModule holds the model as ``model``; metrics and balancer state are not needed
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise DataError(
            f"{run_dir / checkpoint}: does not match model {cfg.model.name!r} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return LoadedRun(run_dir, cfg, spec, pre, model.eval())
