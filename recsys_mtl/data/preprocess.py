"""Fit preprocessing on the train split, save it as plain JSON, transform frames to column tensors.

Index conventions shared by every categorical table (and later by the ONNX graph):
``0`` = missing (null) or sequence padding, ``1`` = out of vocabulary, ``2..`` = vocabulary /
hash buckets. The fitted state is the single source for training, export and serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch

from pydantic import BaseModel, ConfigDict, Field

from recsys_mtl.artifacts import read_json, write_atomic
from recsys_mtl.data.fit_statistics import fit_statistics
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, Fitted
from recsys_mtl.features.fitted import FIRST, MISSING, OOV, FittedNumeric, FittedPairCounts, FittedTable
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.registry import for_each
from recsys_mtl.features.tables import check_tables
from recsys_mtl.features.value_limits import check_fitted_state, check_label
from recsys_mtl.spec.features import FeatureSpec, Task

__all__ = ["FIRST", "MISSING", "OOV", "Layout", "Preprocessor", "PreprocessingState", "check_frame", "spec_hash"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def spec_hash(spec: FeatureSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Preprocessor:
    """Fitted preprocessing for one spec. Build with :meth:`fit` or :meth:`load`."""

    def __init__(
        self, spec: FeatureSpec, tables: dict[str, FittedTable], numeric: dict[str, FittedNumeric],
        targets: dict[str, tuple[float, float]] | None = None, pairs: dict[str, FittedPairCounts] | None = None,
    ):
        self.spec = spec
        self.tables = tables
        self.numeric = numeric
        #: feature → pair-count table (``cooccurrence`` features)
        self.pairs = pairs or {}
        #: the same state as the kinds read it
        self.fitted = Fitted(tables, numeric, self.pairs)
        #: regression task → (mean, std) of its train labels; the model standardizes with them
        self.targets = targets or {}
        self.layout = self._layout()

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, spec: FeatureSpec, train: pl.DataFrame, where: str = "train") -> "Preprocessor":
        """Fit on an in-memory frame: the lazy fit of :mod:`recsys_mtl.data.fit_statistics` over it."""
        check_frame(spec, train, where)
        return cls(spec, *fit_statistics(spec, train.lazy(), where))

    @classmethod
    def fit_files(cls, spec: FeatureSpec, files: Sequence[Path], where: str = "train files") -> "Preprocessor":
        """Fit over every row of the Parquet ``files``, with bounded memory (a dataset larger than memory)."""
        lf = pl.scan_parquet([str(f) for f in files])
        check_frame(spec, lf.head(10_000).collect(), where)  # columns and dtypes, on a sample
        return cls(spec, *fit_statistics(spec, lf, where))

    # ------------------------------------------------------------------ transform
    def transform(self, df: pl.DataFrame, where: str = "data") -> EncodedTable:
        check_frame(self.spec, df, where)
        n = df.height
        cols: Columns[np.ndarray] = Columns()
        for kind, f in for_each(self.spec.features):
            cols.extend(kind.transform(f, df, self.fitted, where))
        labels, weights = encode_labels(self.spec.tasks, df, where)
        return EncodedTable(
            categorical=torch.from_numpy(_stack(cols.categorical, n, np.int64)),
            numeric=torch.from_numpy(_stack(cols.numeric + cols.indicators, n, np.float32)),
            sequences={name: torch.from_numpy(v) for name, v in cols.sequences.items()},
            labels=torch.from_numpy(labels),
            weights=torch.from_numpy(weights),
            groups=encode_groups(self.spec.group_columns, df),
        )

    # ------------------------------------------------------------------ layout
    def _layout(self) -> Layout:
        lay = Layout()
        for kind, f in for_each(self.spec.features):
            kind.layout(f, self.fitted, lay)
        lay.targets = dict(self.targets)
        quantiles = [self.numeric[name].quantiles for name in lay.numeric]
        lay.numeric_quantiles = None if any(q is None for q in quantiles) else quantiles  # type: ignore[assignment]
        lay.table_counts = {name: t.counts for name, t in self.tables.items() if t.counts is not None}
        return lay

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        # "pairs" only when a feature fitted one, so files of specs without such features stay as they were
        pairs = {"pairs": {k: asdict(v) for k, v in self.pairs.items()}} if self.pairs else {}
        return {
            "format_version": FORMAT_VERSION,
            "spec_name": self.spec.name,
            "spec_hash": spec_hash(self.spec),
            "index_convention": {"missing": MISSING, "oov": OOV, "first": FIRST},
            "tables": {k: asdict(v) for k, v in self.tables.items()},
            "numeric": {k: asdict(v) for k, v in self.numeric.items()},
            "targets": {k: {"mean": m, "std": sd} for k, (m, sd) in self.targets.items()},
            **pairs,
        }

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), json.dumps(self.state(), indent=1))

    @classmethod
    def load(cls, path: str | Path, spec: FeatureSpec) -> "Preprocessor":
        """Read ``preprocessing.json`` back; a tampered or mismatched file fails naming the field."""
        path = Path(path)
        state = read_json(path, PreprocessingState)
        if state.format_version != FORMAT_VERSION:
            raise DataError(f"{path}: format_version {state.format_version!r}, expected {FORMAT_VERSION}")
        if state.spec_hash != spec_hash(spec):
            raise DataError(f"{path}: fitted for a different spec (hash {state.spec_hash}, spec {spec_hash(spec)})")
        state.check(spec, path)
        return cls(spec, state.tables, state.numeric, {k: (v.mean, v.std) for k, v in state.targets.items()}, state.pairs)


class TargetStats(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mean: float
    std: float = Field(gt=0)


class PreprocessingState(BaseModel):
    """The schema of ``preprocessing.json`` (see :meth:`Preprocessor.state`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format_version: int
    spec_name: str
    spec_hash: str
    index_convention: dict[str, int]
    tables: dict[str, FittedTable]
    numeric: dict[str, FittedNumeric]
    targets: dict[str, TargetStats] = {}
    """regression task → train label statistics the model standardises with"""
    pairs: dict[str, FittedPairCounts] = {}
    """feature → pair-count table (``cooccurrence`` features)"""

    def check(self, spec: FeatureSpec, path: Path) -> None:
        """Cross-field checks: the convention, and a usable entry for every table / numeric feature."""
        if self.index_convention != {"missing": MISSING, "oov": OOV, "first": FIRST}:
            raise DataError(f"{path}: index_convention {self.index_convention}, expected missing={MISSING}, oov={OOV}, first={FIRST}")
        check_tables(spec.features, self.tables, path)
        fitted = Fitted(self.tables, self.numeric, self.pairs)
        for kind, f in for_each(spec.features):
            kind.check_state(f, fitted, path)
        check_fitted_state(self.numeric, {k: (v.mean, v.std) for k, v in self.targets.items()}, path)


# ---------------------------------------------------------------------- helpers
def check_frame(spec: FeatureSpec, df: pl.DataFrame, where: str) -> None:
    """Every column the spec reads is present with a usable dtype; numeric columns parse."""
    if df.height == 0:
        raise DataError(f"{where}: no rows")
    for col in spec.required_columns():
        if col not in df.columns:
            raise DataError(f"{where}: column {col!r} named in the spec is missing from the data")
    for kind, f in for_each(spec.features):
        kind.check_frame(f, df, where)


def encode_labels(tasks: list[Task], df: pl.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) float32 labels and (N, T) float32 weights = mask × sample weight (0 where label is null)."""
    n = df.height
    labels = np.zeros((n, len(tasks)), dtype=np.float32)
    weights = np.zeros((n, len(tasks)), dtype=np.float32)
    for t, task in enumerate(tasks):
        try:
            y = df.select(pl.sql_expr(task.label).alias("y"))["y"]
        except Exception as exc:
            raise DataError(f"{where}: task {task.name!r}: cannot evaluate label {task.label!r}: {str(exc).splitlines()[0]}") from None
        if y.dtype == pl.String:
            raise DataError(f"{where}: task {task.name!r}: label {task.label!r} is text; write an expression such as \"col = 'yes'\"")
        y = y.cast(pl.Float64)
        valid = y.is_not_null().to_numpy()
        yv = y.fill_null(0).to_numpy()
        check_label(yv, valid, task.name, task.label, where)
        if task.type == "binary" and not np.isin(yv[valid], (0.0, 1.0)).all():
            raise DataError(f"{where}: task {task.name!r}: binary label {task.label!r} has values other than 0/1")
        if task.type == "multiclass":
            ok = (yv[valid] == np.round(yv[valid])) & (yv[valid] >= 0) & (yv[valid] < task.num_classes)  # type: ignore[operator]
            if not ok.all():
                raise DataError(f"{where}: task {task.name!r}: multiclass label must be an integer in [0, {task.num_classes})")
        w = valid.astype(np.float32)
        if task.mask is not None:
            w *= df.select(pl.sql_expr(task.mask).fill_null(False).cast(pl.Float32).alias("m"))["m"].to_numpy()
        if task.sample_weight is not None:
            w *= df.select(pl.sql_expr(task.sample_weight).cast(pl.Float32).fill_null(0).alias("w"))["w"].to_numpy()
        if w.sum() == 0:
            raise DataError(f"{where}: task {task.name!r} has no labelled rows")
        labels[:, t] = yv
        weights[:, t] = w
    return labels, weights


def encode_groups(columns: list[str], df: pl.DataFrame) -> torch.Tensor | None:
    """(N, G) int64 group codes, one column per grouping column: equal values share a code
    (1..), null is 0 (in no group). Codes are only comparable within one frame."""
    if not columns:
        return None
    codes = [
        df[c].cast(pl.String).rank("dense").fill_null(0).cast(pl.Int64).to_numpy() for c in columns
    ]
    return torch.from_numpy(np.ascontiguousarray(np.stack(codes, axis=1)))


def _stack(cols: list[np.ndarray], n: int, dtype: type) -> np.ndarray:
    if not cols:
        return np.zeros((n, 0), dtype=dtype)
    return np.ascontiguousarray(np.stack(cols, axis=1).astype(dtype))
