"""Helpers for the export and serving tests: a run folder without training, and an export of it.

A real ``fit`` takes tens of seconds; these tests only need the run folder's files, so the model
is built untrained (weights jittered so outputs are not all 0.5) and its state saved the way
Lightning checkpoints it (``model.`` prefix under ``state_dict``).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import onnx
import onnxruntime as ort
import polars as pl
import pytest
import torch
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import exporter
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


def _stable_repr(value: Any) -> str:
    """``repr`` with functions named by where they are defined (their default repr holds an address,
    which differs between xdist workers)."""
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "(" + ", ".join(_stable_repr(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    if callable(value) and hasattr(value, "__qualname__"):
        code = getattr(value, "__code__", None)
        where = f"@{code.co_filename}:{code.co_firstlineno}" if code is not None else ""
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}{where}"
    return repr(value)


def head_key(head: ScoringHead, example: Sequence[torch.Tensor]) -> str:
    """A digest of what the model graph of ``head`` depends on: the modules' classes, structure and
    plain attributes (a flag a forward reads), weights, input names, tasks, dtype, calibration and the
    example's dtypes and trailing shapes. An attribute without a stable repr only makes keys differ."""
    digest = hashlib.sha256()
    for module in head.modules():
        plain = {k: v for k, v in vars(module).items() if not k.startswith("_")}
        digest.update(f"{type(module).__module__}.{type(module).__qualname__}{_stable_repr(plain)}".encode())
    digest.update(repr((head.input_names, head.tasks, head.compute_dtype, sorted(head.calibration.items()),
                        [(str(x.dtype), tuple(x.shape[1:])) for x in example])).encode())
    for name, value in head.state_dict().items():
        digest.update(f"{name}{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def shared_model_graphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``export_run`` traces each distinct scoring head once per pytest run, for every xdist worker
    (:func:`~tests.support.run_once.built_once`): session artifacts of the same model on the same
    encoded layout (e.g. two preprocessings of the same columns) share its ~3 s export; each export
    still attaches its own preprocessing graph, checks parity and writes its files.

    Nested (a session artifact built inside a module that shares graphs), the inner one is the outer
    one: wrapping the wrapper would take the same graph's file lock twice in one process and hang."""
    if getattr(exporter.export_model, "shares_graphs", False):
        yield
        return
    real = exporter.export_model

    def export_once(head: ScoringHead, example: Sequence[torch.Tensor]) -> onnx.ModelProto:
        def build(folder: Path) -> None:
            onnx.save(real(head, example), folder / "model.onnx")

        return onnx.load(built_once(tmp_path_factory, f"model_graph-{head_key(head, example)[:24]}", build) / "model.onnx")

    export_once.shares_graphs = True  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "export_model", export_once)
        yield


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported model (untrained mmoe on the synthetic spec, fp32 + int8) per test session.

    Imported by several test modules; built once per run and shared by every xdist worker
    (:func:`tests.support.run_once.built_once`).
    """
    from recsys_mtl.export import export_run

    def build(root: Path) -> None:
        run = make_run(root, synthetic_spec(2), generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1)))
        with shared_model_graphs(tmp_path_factory):  # the model graph of separator_export_dir
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
        with shared_model_graphs(tmp_path_factory):  # the model graph of export_dir: same columns once encoded
            export_run(make_run(root, separator_spec(), train), root / "export", test=delimited(held_out(200)))

    return built_once(tmp_path_factory, "separator_export", build) / "export"


def good_row(i: int = 0) -> dict[str, Any]:
    """A valid JSON request row for the synthetic spec."""
    return {
        "num0": 0.5 + i, "num1": None, "num2": -1, "num3": 2.5, "num4": 0.0, "num5": 1.25,
        "cat0": "c0_3", "cat1": None, "cat2": "anything", "cat3": "c3_1", "cat4": "c4_7", "cat5": "never-seen",
        "tags": ["t1", "t7", None],
    }
