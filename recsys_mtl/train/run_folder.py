"""A run folder's pipeline as saved, and reading a run folder back: pipeline, spec, fitted
preprocessing and the trained model.

The one loader that export, diagnostics and any later consumer of a run share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from recsys_mtl.artifacts import load_checkpoint, read_json, write_atomic
from recsys_mtl.balancing import BALANCERS
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import DataError, RecsysMTLError, SpecError
from recsys_mtl.models import MODELS, MultiTaskModel, build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.encoder_config import encoder_config
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import load_spec, read_yaml, validate
from recsys_mtl.spec.pipeline import PipelineConfig

DEFAULT_CHECKPOINT = "checkpoints/best.ckpt"
#: written into a run folder whose fit raised (a non-finite loss, a read error, an interrupt): its
#: first line is the error; the folder keeps its last good checkpoints for ``fit --resume``, has
#: no metrics.json, and ``export`` / ``report`` refuse it. A resumed fit that finishes removes it.
FAILED_MARKER = "FAILED"
#: sections a run does not apply: a study runs from its own pipeline, a run holds one trial's values
NOT_APPLIED = frozenset({"tune"})


def applied_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """The pipeline as a run applied it: what the run folder's ``pipeline.yaml`` holds.

    Every field that shaped the run, with its effective value, and nothing else:

    * model and balancing ``params`` are resolved against the component's typed config (its
      defaults written out), so the file rebuilds the trained model even if a default changes;
    * the data section holds the chosen kind's fields, less those that had no effect with these
      values (:meth:`~recsys_mtl.spec.pipeline.DataSection.inapplicable`);
    * ``tune`` is left out, and so is every field left empty (None, ``{}``, ``[]``) at a default
      that is empty too: it carries nothing, and loading the file restores it.

    Loading the saved file gives this config back: ``load_pipeline`` of it equals
    ``PipelineConfig.model_validate(applied_pipeline(cfg))``.
    """
    out = _applied(cfg, NOT_APPLIED | {"encoder"})  # written below with its defaults resolved
    out["data"] = _applied(cfg.data, cfg.data.inapplicable())
    for field, registry in (("model", MODELS), ("balancing", BALANCERS)):
        comp = getattr(cfg, field)
        out[field] = {"name": comp.name, "params": _applied(registry.config(comp.name, comp.params))}
    ordered: dict[str, Any] = {}
    for key, value in out.items():  # the encoder section right after the model, as in a hand-written file
        ordered[key] = value
        if key == "model":
            ordered["encoder"] = _applied(encoder_config(cfg.encoder))
    return ordered


def _applied(model: BaseModel, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    dumped = model.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name in drop or (_empty(value) and _empty(field.get_default(call_default_factory=True))):
            continue
        out[name] = _applied(value) if isinstance(value, BaseModel) else dumped[name]
    return out


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple)) and not value)


def mark_failed(run_dir: Path, exc: BaseException) -> None:
    """Mark ``run_dir`` failed with ``exc``'s message (best effort: the disk may be what failed)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        write_atomic(run_dir / FAILED_MARKER, f"{type(exc).__name__}: {message}\n")
    except (OSError, RecsysMTLError):  # the original error is the one to report
        pass


def clear_failed(run_dir: Path) -> None:
    (run_dir / FAILED_MARKER).unlink(missing_ok=True)


def check_finite_results(results: Any, path: Path, key: str = "") -> None:
    """Refuse to record a non-finite loss (or monitored score) in ``path``; any other non-finite
    number (a metric undefined on this split, e.g. AUC with one class) is set to None in place,
    so the file is valid JSON (json.dumps would write ``NaN``)."""
    items = results.items() if isinstance(results, dict) else enumerate(results) if isinstance(results, list) else ()
    for k, v in items:
        name = f"{key}.{k}" if key else str(k)
        if isinstance(v, (dict, list)):
            check_finite_results(v, path, name)
        elif isinstance(v, float) and not math.isfinite(v):
            if "loss" in name or name == "monitor.best":
                raise RecsysMTLError(f"{path}: {name} is {v}: not written (the run is marked {FAILED_MARKER})")
            results[k] = None


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: PipelineConfig
    spec: FeatureSpec
    preprocessor: Preprocessor
    model: MultiTaskModel
    #: the checkpoint the weights came from, relative to ``run_dir``
    checkpoint: str = DEFAULT_CHECKPOINT


class RunMetrics(BaseModel):
    """The part of ``metrics.json`` a reader relies on (the rest is free-form)."""

    model_config = ConfigDict(extra="allow")

    best_checkpoint: str | None = None
    """the checkpoint selected on validation, relative to the run folder"""

    @field_validator("best_checkpoint")
    @classmethod
    def _inside_checkpoints(cls, value: str | None) -> str | None:
        # a plain file name under checkpoints/: a tampered file cannot point the loader elsewhere
        if value is not None:
            parts = value.split("/")
            if len(parts) != 2 or parts[0] != "checkpoints" or parts[1] in ("", ".", "..") or "\\" in value or not value.endswith(".ckpt"):
                raise ValueError(f"{value!r} is not a file under checkpoints/")
        return value


def selected_checkpoint(run_dir: Path) -> str:
    """The checkpoint the run selected: metrics.json's ``best_checkpoint`` (a resumed run may have
    selected ``best-v1.ckpt``), else ``checkpoints/best.ckpt`` for a run that has no metrics yet."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        return DEFAULT_CHECKPOINT
    return read_json(metrics, RunMetrics).best_checkpoint or DEFAULT_CHECKPOINT


def load_run(run_dir: str | Path, checkpoint: str | None = None) -> LoadedRun:
    """Rebuild a run's model with the checkpoint's weights (eval mode), and its preprocessing.

    ``checkpoint`` (relative to the run folder) defaults to the one the run selected. Every file
    is read as data: YAML within limits, JSON against a schema, the checkpoint as tensors only.
    """
    run_dir = Path(run_dir)
    if (run_dir / FAILED_MARKER).is_file():
        reason = (run_dir / FAILED_MARKER).read_text(errors="replace").strip().splitlines()[:1]
        raise DataError(f"{run_dir}: the fit of this run failed ({(reason or ['no reason recorded'])[0][:300]}); "
                        f"fix the cause and `fit --resume` it, or delete {FAILED_MARKER} to use its last checkpoint")
    for name in ("pipeline.yaml", "spec.yaml", "preprocessing.json"):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir}: not a complete run folder ({name} is missing)")
    checkpoint = checkpoint or selected_checkpoint(run_dir)
    if not (run_dir / checkpoint).is_file():
        raise DataError(f"{run_dir}: not a complete run folder ({checkpoint} is missing)")
    pipeline_path = run_dir / "pipeline.yaml"
    cfg = validate(PipelineConfig, read_yaml(pipeline_path), pipeline_path)
    spec = load_spec(run_dir / "spec.yaml")
    pre = Preprocessor.load(run_dir / "preprocessing.json", spec)
    try:
        model = build_model(cfg.model.name, cfg.model.params, model_context(pre.layout, spec.tasks, cfg.encoder))
    except (SpecError, ValueError) as exc:
        raise SpecError(f"{pipeline_path}: {exc}") from None
    ckpt_path = run_dir / checkpoint
    state = load_checkpoint(ckpt_path)["state_dict"]
    # the LightningModule holds the model as ``model``; metrics and balancer state are not needed
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shapes differ: the pipeline or preprocessing was edited after training
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise DataError(
            f"{ckpt_path}: does not match the model {pipeline_path} and {run_dir / 'preprocessing.json'} "
            f"describe ({detail[:300]})"
        ) from None
    if missing or unexpected:
        raise DataError(
            f"{ckpt_path}: does not match model {cfg.model.name!r} of {pipeline_path} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return LoadedRun(run_dir, cfg, spec, pre, model.eval(), checkpoint)
