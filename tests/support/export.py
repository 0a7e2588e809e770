"""Helpers for the export and serving tests: a run folder without training, and an export of it.

A real ``fit`` takes tens of seconds; these tests only need the run folder's files, so the model
is built untrained (weights jittered so outputs are not all 0.5) and its state saved the way
Lightning checkpoints it (``model.`` prefix under ``state_dict``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import onnxruntime as ort
import polars as pl
import pytest
import torch
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export.exporter import attach_preprocessing
from recsys_mtl.export.model_graph import ScoringHead, export_model
from recsys_mtl.export.preprocess_graph import encoded_names
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from tests.support.run_once import built_once
from tests.support.synthetic import synthetic_spec


def funnel_spec(base: FeatureSpec) -> FeatureSpec:
    """``base`` with task1 declared as a funnel stage after task0 (esmm / aitm need one)."""
    raw = base.model_dump(mode="json", exclude_defaults=True)
    raw["tasks"][1]["after"] = raw["tasks"][0]["name"]
    return FeatureSpec.model_validate(raw)


EXPORT_TRAIN = generate(SyntheticConfig(rows=1200, num_tasks=2, seed=2))


@lru_cache(maxsize=8)
def _fitted_on_export_train(spec_json: str) -> Preprocessor:
    """The preprocessing of a spec (by its JSON) fitted on EXPORT_TRAIN: many export tests fit the same
    spec on it (~0.25 s each); transforms only read the fitted statistics."""
    return Preprocessor.fit(FeatureSpec.model_validate_json(spec_json), EXPORT_TRAIN)


def export_session(spec: FeatureSpec, name: str, params: dict[str, Any] | None = None, train: pl.DataFrame | None = None,
                   encoder: dict[str, Any] | None = None) -> tuple[ScoringHead, ort.InferenceSession, Preprocessor]:
    """``name`` built on ``spec`` (weights jittered) with the pipeline section ``encoder``, exported
    with raw-column preprocessing: (torch scoring head, onnxruntime session, preprocessor); fitted
    on ``train`` or EXPORT_TRAIN."""
    pre = _fitted_on_export_train(spec.model_dump_json()) if train is None else Preprocessor.fit(spec, train)
    train = EXPORT_TRAIN if train is None else train
    torch.manual_seed(0)
    model = build_model(name, params or {}, model_context(pre.layout, spec.tasks, encoder))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    names = encoded_names(pre)
    head = ScoringHead(model, spec.tasks, names)
    cols = pre.transform(train).columns()
    onnx_model = attach_preprocessing(export_model(head, [cols[n][:3] for n in names]), pre)
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return head, session, pre


def make_run(root: Path, spec: FeatureSpec, train: pl.DataFrame, model: str = "mmoe",
             params: dict[str, Any] | None = None, seed: int = 0, encoder: dict[str, Any] | None = None) -> Path:
    """A run folder (pipeline.yaml, spec.yaml, preprocessing.json, checkpoints/best.ckpt)."""
    run = root / f"run-{model}"
    (run / "checkpoints").mkdir(parents=True)
    cfg = PipelineConfig.model_validate({
        "name": f"t_{model}",
        "spec": str(run / "spec.yaml"),
        # labels for every task of the spec, for exports that read the run's own held-out rows
        "data": {"kind": "synthetic", "rows": 1000, "num_tasks": len(spec.tasks), "cache_dir": str(root / "cache")},
        "model": {"name": model, "params": params or {}},
        "encoder": encoder or {},
    })
    pre = Preprocessor.fit(spec, train)
    torch.manual_seed(seed)
    net = build_model(model, params or {}, model_context(pre.layout, spec.tasks, encoder))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    (run / "pipeline.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    pre.save(run / "preprocessing.json")
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, run / "checkpoints" / "best.ckpt")
    return run


def held_out(rows: int = 400, seed: int = 7) -> pl.DataFrame:
    """Synthetic rows from another seed, with OOV values, nulls and empty / null tag lists mixed in."""
    df = generate(SyntheticConfig(rows=rows, num_tasks=2, seed=seed))
    i = pl.int_range(pl.len())
    return df.with_columns(
        cat0=pl.when(i % 7 == 0).then(None).when(i % 5 == 0).then(pl.lit("never-seen")).otherwise(pl.col("cat0")),
        cat2=pl.when(i % 3 == 0).then(None).when(i % 4 == 0).then(pl.lit("héllo wörld")).otherwise(pl.col("cat2")),
        num1=pl.when(i % 6 == 0).then(None).otherwise(pl.col("num1")),
        num5=pl.when(i % 9 == 0).then(None).otherwise(pl.col("num5")),
        tags=pl.when(i % 8 == 0).then(pl.lit([], dtype=pl.List(pl.String)))
        .when(i % 11 == 0).then(None)
        .when(i % 13 == 0).then(pl.lit(["t1", None, "unseen-tag", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]))
        .otherwise(pl.col("tags")),
    )


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported model (untrained mmoe on the synthetic spec, fp32 + int8) per test session.

    Imported by several test modules; built once per run and shared by every xdist worker
    (:func:`tests.support.run_once.built_once`).
    """
    from recsys_mtl.export import export_run

    def build(root: Path) -> None:
        run = make_run(root, synthetic_spec(2), generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1)))
        export_run(run, root / "export", variants=("int8",), test=held_out(200))

    return built_once(tmp_path_factory, "serving_export", build) / "export"


def delimited(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with the ``tags`` lists written as text, as a CSV holds them: ``"t1 | t7"``, ``""`` for an empty list."""
    return df.with_columns(pl.col("tags").list.join(" | "))


def separator_spec() -> FeatureSpec:
    """The synthetic spec with ``tags`` read as '|'-delimited text."""
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    next(f for f in raw["features"] if f["name"] == "tags")["separator"] = "|"
    return FeatureSpec.model_validate(raw)


@pytest.fixture(scope="session")
def separator_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export (untrained mmoe, fp32) of :func:`separator_spec`, fitted on text tags; its parity
    check already compares training's split with the server's on the held-out text."""
    from recsys_mtl.export import export_run

    def build(root: Path) -> None:
        train = delimited(generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1)))
        export_run(make_run(root, separator_spec(), train), root / "export", test=delimited(held_out(200)))

    return built_once(tmp_path_factory, "separator_export", build) / "export"


def good_row(i: int = 0) -> dict[str, Any]:
    """A valid JSON request row for the synthetic spec."""
    return {
        "num0": 0.5 + i, "num1": None, "num2": -1, "num3": 2.5, "num4": 0.0, "num5": 1.25,
        "cat0": "c0_3", "cat1": None, "cat2": "anything", "cat3": "c3_1", "cat4": "c4_7", "cat5": "never-seen",
        "tags": ["t1", "t7", None],
    }
