"""Fit preprocessing on the train split, save it as plain JSON, transform frames to column tensors.

Index conventions shared by every categorical table (and later by the ONNX graph):
``0`` = missing (null) or sequence padding, ``1`` = out of vocabulary, ``2..`` = vocabulary /
hash buckets. The fitted state is the single source for training, export and serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch

from pydantic import BaseModel, ConfigDict, Field

from recsys_mtl.artifacts import read_json, write_atomic
from recsys_mtl.data.fitted import FIRST, MISSING, OOV, FittedNumeric, FittedTable
from recsys_mtl.data.sequences import check_sequence_column, sequence_items
from recsys_mtl.data.streaming_fit import fit_statistics
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.data.value_limits import check_float32_magnitudes, check_fitted_state, check_label, check_transformed
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import (
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    SequenceFeature,
    Task,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def spec_hash(spec: FeatureSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Layout:
    """Where each feature sits in the encoded tensors; what the encoder is built from."""

    #: (feature, table) per column of the categorical matrix (quantile-bucketed numerics included)
    categorical: list[tuple[str, str]] = field(default_factory=list)
    #: feature name per column of the numeric matrix
    numeric: list[str] = field(default_factory=list)
    #: feature names of numeric columns that are missing indicators
    indicators: list[str] = field(default_factory=list)
    #: (feature, table, max_len, pooling)
    sequences: list[tuple[str, str, int, str]] = field(default_factory=list)
    #: table → (size, embedding_dim)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: train quantiles per column of ``numeric`` (indicators excluded), None when not fitted
    numeric_quantiles: list[list[float]] | None = None
    #: regression task → (mean, std) of its train labels (counted rows, sample-weighted)
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: sequence pooled by target attention → (query's column in the categorical matrix,
    #: attention hidden widths, softmax)
    attention: dict[str, tuple[int, tuple[int, ...], bool]] = field(default_factory=dict)


class Preprocessor:
    """Fitted preprocessing for one spec. Build with :meth:`fit` or :meth:`load`."""

    def __init__(
        self, spec: FeatureSpec, tables: dict[str, FittedTable], numeric: dict[str, FittedNumeric],
        targets: dict[str, tuple[float, float]] | None = None,
    ):
        self.spec = spec
        self.tables = tables
        self.numeric = numeric
        #: regression task → (mean, std) of its train labels; the model standardizes with them
        self.targets = targets or {}
        self.layout = self._layout()

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, spec: FeatureSpec, train: pl.DataFrame, where: str = "train") -> "Preprocessor":
        """Fit on an in-memory frame: the lazy fit of :mod:`recsys_mtl.data.streaming_fit` over it."""
        check_frame(spec, train, where)
        return cls(spec, *fit_statistics(spec, train.lazy(), where))

    @classmethod
    def fit_files(cls, spec: FeatureSpec, files: Sequence[Path], where: str = "train files") -> "Preprocessor":
        """Fit over every row of the Parquet ``files``, with bounded memory (a dataset larger than memory)."""
        lf = pl.scan_parquet([str(f) for f in files])
        check_frame(spec, lf.head(10_000).collect(), where)  # columns and dtypes, on a sample
        check_float32_magnitudes(spec, lf, where)  # every row, as check_frame does for a frame
        return cls(spec, *fit_statistics(spec, lf, where))

    # ------------------------------------------------------------------ transform
    def transform(self, df: pl.DataFrame, where: str = "data") -> EncodedTable:
        check_frame(self.spec, df, where)
        n = df.height
        cat_cols: list[np.ndarray] = []
        num_cols: list[np.ndarray] = []
        ind_cols: list[np.ndarray] = []
        for f in self.spec.categorical:
            idx = self.tables[f.table].lookup(df[f.source])
            _check_unseen(where, f, df[f.source], idx)
            cat_cols.append(idx)
        for f in self.spec.numeric:
            fitted = self.numeric[f.name]
            values, missing = fitted.transform(df[f.source])
            check_transformed(fitted, df[f.source], values, where)  # float64 here, float32 in the model
            (cat_cols if fitted.boundaries is not None else num_cols).append(values)
            if fitted.indicator:
                ind_cols.append(missing.astype(np.float32))
        sequences = {f.name: self._sequence(f, df.select(sequence_items(f, df.schema[f.source])).to_series())
                     for f in self.spec.sequences}
        labels, weights = encode_labels(self.spec.tasks, df, where)
        return EncodedTable(
            categorical=torch.from_numpy(_stack(cat_cols, n, np.int64)),
            numeric=torch.from_numpy(_stack(num_cols + ind_cols, n, np.float32)),
            sequences=sequences,
            labels=torch.from_numpy(labels),
            weights=torch.from_numpy(weights),
            groups=encode_groups(self.spec.group_columns, df),
        )

    def _sequence(self, f: SequenceFeature, col: pl.Series) -> torch.Tensor:
        """A list column (a row's items) → (N, max_len) int64 indices, the first ``max_len`` items kept."""
        heads = col.list.head(f.max_len)
        lengths = heads.list.len().fill_null(0).to_numpy().astype(np.int64)
        flat = heads.explode(empty_as_null=False, keep_nulls=False)
        idx = self.tables[f.table].lookup(flat)
        out = np.zeros((col.len(), f.max_len), dtype=np.int64)
        rows = np.repeat(np.arange(col.len()), lengths)
        starts = np.cumsum(lengths) - lengths
        pos = np.arange(lengths.sum()) - np.repeat(starts, lengths)
        out[rows, pos] = idx
        return torch.from_numpy(out)

    # ------------------------------------------------------------------ layout
    def _layout(self) -> Layout:
        lay = Layout()
        for f in self.spec.categorical:
            lay.categorical.append((f.name, f.table))
            lay.tables[f.table] = (self.tables[f.table].size, f.embedding_dim)
        for f in self.spec.numeric:
            fitted = self.numeric[f.name]
            if fitted.boundaries is not None:
                lay.categorical.append((f.name, f.name))
                lay.tables[f.name] = (len(fitted.boundaries) + 1 + FIRST, f.embedding_dim)
            else:
                lay.numeric.append(f.name)
        lay.indicators = [f.name for f in self.spec.numeric if self.numeric[f.name].indicator]
        lay.targets = dict(self.targets)
        quantiles = [self.numeric[name].quantiles for name in lay.numeric]
        lay.numeric_quantiles = None if any(q is None for q in quantiles) else quantiles  # type: ignore[assignment]
        for f in self.spec.sequences:
            lay.sequences.append((f.name, f.table, f.max_len, f.pooling))
            lay.tables[f.table] = (self.tables[f.table].size, f.embedding_dim)
            if f.attention is not None:
                column = [name for name, _ in lay.categorical].index(f.attention.query)
                lay.attention[f.name] = (column, tuple(f.attention.hidden), f.attention.softmax)
        return lay

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "spec_name": self.spec.name,
            "spec_hash": spec_hash(self.spec),
            "index_convention": {"missing": MISSING, "oov": OOV, "first": FIRST},
            "tables": {k: asdict(v) for k, v in self.tables.items()},
            "numeric": {k: asdict(v) for k, v in self.numeric.items()},
            "targets": {k: {"mean": m, "std": sd} for k, (m, sd) in self.targets.items()},
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
        return cls(spec, state.tables, state.numeric, {k: (v.mean, v.std) for k, v in state.targets.items()})


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
    #: regression task → train label statistics the model standardises with
    targets: dict[str, TargetStats] = {}

    def check(self, spec: FeatureSpec, path: Path) -> None:
        """Cross-field checks: the convention, and a usable entry for every table / numeric feature."""
        if self.index_convention != {"missing": MISSING, "oov": OOV, "first": FIRST}:
            raise DataError(f"{path}: index_convention {self.index_convention}, expected missing={MISSING}, oov={OOV}, first={FIRST}")
        for f in [*spec.categorical, *spec.sequences]:
            t = self.tables.get(f.table)
            if t is None:
                raise DataError(f"{path}: tables: no entry for table {f.table!r} (feature {f.name!r})")
            if (t.vocab is None) == (t.hash_buckets is None) or (t.hash_buckets is not None and t.hash_buckets < 1):
                raise DataError(f"{path}: tables.{f.table}: needs either a vocab or hash_buckets >= 1")
        for f in spec.numeric:
            n = self.numeric.get(f.name)
            if n is None:
                raise DataError(f"{path}: numeric: no entry for feature {f.name!r}")
            if n.source != f.source or not n.std > 0:
                raise DataError(f"{path}: numeric.{f.name}: source must be {f.source!r} and std > 0")
            if n.boundaries is not None and n.boundaries != sorted(n.boundaries):
                raise DataError(f"{path}: numeric.{f.name}.boundaries: not sorted")
        check_fitted_state(self.numeric, {k: (v.mean, v.std) for k, v in self.targets.items()}, path)


# ---------------------------------------------------------------------- helpers
def check_frame(spec: FeatureSpec, df: pl.DataFrame, where: str) -> None:
    """Every column the spec reads is present with a usable dtype; numeric columns parse."""
    if df.height == 0:
        raise DataError(f"{where}: no rows")
    for col in spec.required_columns():
        if col not in df.columns:
            raise DataError(f"{where}: column {col!r} named in the spec is missing from the data")
    for f in spec.sequences:
        check_sequence_column(f, df.schema[f.source], where)
    for f in spec.numeric:
        dtype = df.schema[f.source]
        if not (dtype.is_numeric() or dtype == pl.String or dtype == pl.Null):
            raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) has dtype {dtype}")
        if dtype == pl.String:
            bad = df[f.source].drop_nulls().filter(df[f.source].drop_nulls().cast(pl.Float64, strict=False).is_null())
            if bad.len():
                raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) has non-numeric value {bad[0]!r}")
        _check_finite(f, df[f.source], where)
    check_float32_magnitudes(spec, df, where)


def _check_finite(f: NumericFeature, col: pl.Series, where: str) -> None:
    """±inf is refused, not imputed: it is rarely a missing value and would poison the statistics
    (the server refuses it too). Null and NaN are the missing values."""
    if not (col.dtype.is_float() or col.dtype == pl.String):
        return
    inf = col.cast(pl.Float64, strict=False).is_infinite()
    if inf.any():
        row = int(inf.arg_max())  # type: ignore[arg-type]
        raise DataError(
            f"{where}: column {f.source!r} (numeric feature {f.name!r}) has {int(inf.sum())} infinite "
            f"value(s), first at row {row}; write missing values as null or NaN"
        )



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


def _check_unseen(where: str, f: CategoricalFeature, values: pl.Series, idx: np.ndarray) -> None:
    oov = idx == OOV
    if f.unseen == "error" and oov.any():
        examples = values.filter(pl.Series(oov)).unique().head(3).to_list()
        raise DataError(f"{where}: column {f.source!r} (feature {f.name!r}) has {int(oov.sum())} values unseen in train, e.g. {examples}")
    rate = float(oov.mean())
    if rate > 0.05:
        log.warning("%s: feature %r: %.1f%% of values are out of vocabulary", where, f.name, 100 * rate)
