"""``dense``: a fixed-length float vector per row (e.g. a pretrained text or image embedding) → ``size``
numeric columns.

The column is a list or array column of numbers (Parquet / Arrow ``list`` or ``fixed_size_list``), or,
with ``separator``, text of numbers (from a CSV: ``"0.1|0.5|-0.2"``; items stripped of ASCII
whitespace, empty items dropped, as sequence text is split). Optional L2 normalisation divides each
vector by its Euclidean norm (a zero vector stays zero). Each component becomes one column of the
numeric matrix, ``<feature>.<k>``, optionally standardized with train statistics.

Why columns and not a projection: the encoder's first layer over the numeric matrix (the MLP input of
every model) *is* a learned linear projection of these components, so a separate projection would add
a second, redundant linear map; the tree baselines also read the components as numbers. The cost is
``size`` entries in ``preprocessing.json`` and one quantile pass per component in the fit.

Missing: a null vector is zeros (after standardization when ``standardize`` is off, the default) plus
one missing indicator (``<feature>.0``'s). A vector of another length, or with a null / non-numeric /
non-finite item, is an error naming the feature, the column and the row, in training and at the server.

Serving: a ``vector`` input of width ``size`` (float64 (B, size), a missing vector = a row of NaN; the
server also takes the delimited text when ``separator`` is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted
from recsys_mtl.features.fitted import QUANTILE_STEPS, FittedNumeric
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.numeric_fit import NumericColumn, fit_numeric_columns
from recsys_mtl.features.registry import register
from recsys_mtl.strict import StrictModel
from serving.contract import ITEM_WHITESPACE, InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

#: L2 norms below this count as zero (the vector is left as it is)
NORM_EPS = 1e-12


class DenseFeature(StrictModel):
    """A fixed-length vector column → ``size`` numeric columns (optionally L2-normalised, standardized)."""

    kind: Literal["dense"]
    """`dense`"""
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec)"""
    column: str | None = None
    """the raw vector column read (default: `name`)"""
    size: int = Field(ge=1, le=4096)
    """the length of every row's vector"""
    separator: str | None = Field(None, min_length=1)
    """split a text column on this string (CSV); list / array columns are read as they are"""
    normalize: bool = False
    """divide each vector by its L2 norm"""
    standardize: bool = False
    """standardize each component with train mean / std"""
    indicator: bool = True
    """a missing-vector indicator column"""

    @property
    def source(self) -> str:
        return self.column or self.name

    def component(self, k: int) -> str:
        return f"{self.name}.{k}"


def vector(f: DenseFeature, dtype: pl.DataType) -> pl.Expr:
    """List[Float64] of the column (null = missing vector); text is split and parsed (bad items → null)."""
    col = pl.col(f.source)
    if isinstance(dtype, pl.Array):
        col = col.arr.to_list()
    elif not isinstance(dtype, pl.List):
        item = pl.element().str.strip_chars(ITEM_WHITESPACE)
        col = col.cast(pl.String).str.split(f.separator).list.eval(  # type: ignore[arg-type]
            item.filter(item != "").cast(pl.Float64, strict=False))
    col = col.cast(pl.List(pl.Float64))
    if f.normalize:
        norm = col.list.eval(pl.element() * pl.element()).list.sum().sqrt()
        col = pl.when(norm > NORM_EPS).then(col / norm).otherwise(col)
    return col


def _component(f: DenseFeature, dtype: pl.DataType, k: int) -> pl.Expr:
    return vector(f, dtype).list.get(k, null_on_oob=True)


def _columns(f: DenseFeature, dtype: pl.DataType) -> list[NumericColumn]:
    return [
        NumericColumn(name=f.component(k), source=f.source, what=f"dense feature {f.name!r}, component {k}",
                      raw=_component(f, dtype, k), impute="zero", indicator=f.indicator and k == 0,
                      standardize=f.standardize)
        for k in range(f.size)
    ]


@register
class Dense(FeatureKind[DenseFeature]):
    name = "dense"
    spec = DenseFeature
    order = 7
    summary = "a fixed-length float vector (pretrained embedding; list column or delimited text) → size numeric columns"

    def inputs(self, f: DenseFeature) -> list[InputSpec]:
        return [InputSpec(f.source, f.name, "vector", separator=f.separator, size=f.size)]

    def check_frame(self, f: DenseFeature, df: pl.DataFrame, where: str) -> None:
        dtype = df.schema[f.source]
        what = f"{where}: column {f.source!r} (dense feature {f.name!r})"
        inner = dtype.inner if isinstance(dtype, (pl.List, pl.Array)) else None
        text = dtype == pl.String and f.separator is not None
        if not (text or dtype == pl.Null or (inner is not None and (inner.is_numeric() or inner == pl.Null))):
            hint = "; set 'separator' to read delimited text" if dtype == pl.String else ""
            raise DataError(f"{what} must be a list of numbers{' or text split on ' + repr(f.separator) if f.separator else ''}, "
                            f"got {dtype}{hint}")
        v = df.select(vector(f, dtype).alias("v"))["v"]
        present = v.is_not_null()
        bad_len = present & (v.list.len() != f.size)
        if bad_len.any():
            r = int(bad_len.arg_max())  # type: ignore[arg-type]
            raise DataError(f"{what}: row {r} has a vector of length {v[r].len()}, expected {f.size}")
        bad_item = present & ~v.list.eval(pl.element().is_finite().fill_null(False)).list.all()
        if bad_item.any():
            r = int(bad_item.arg_max())  # type: ignore[arg-type]
            raise DataError(f"{what}: row {r} has a missing, non-numeric or non-finite item; write a missing "
                            "vector as null")

    def fit(self, fs: list[DenseFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        schema = lf.collect_schema()
        return fit_numeric_columns([c for f in fs for c in _columns(f, schema[f.source])], lf, where)

    def shape_only(self, f: DenseFeature) -> dict[str, FittedNumeric]:
        return {
            f.component(k): FittedNumeric(f.component(k), f.source, 0.0, f.indicator and k == 0, None, None, False, 0.0, 1.0,
                                          quantiles=[i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)])
            for k in range(f.size)
        }

    def check_state(self, f: DenseFeature, fitted: Fitted, path: Path) -> None:
        for k in range(f.size):
            n = fitted.numeric.get(f.component(k))
            if n is None:
                raise DataError(f"{path}: numeric: no entry for {f.component(k)!r} (dense feature {f.name!r})")
            if n.boundaries is not None or n.log1p or n.impute_value != 0.0 or not n.std > 0:
                raise DataError(f"{path}: numeric.{f.component(k)}: needs impute 0, std > 0, no log1p, no boundaries")

    def layout(self, f: DenseFeature, fitted: Fitted, lay: Layout) -> None:
        lay.numeric += [f.component(k) for k in range(f.size)]
        if fitted.numeric[f.component(0)].indicator:
            lay.indicators.append(f.name)

    def transform(self, f: DenseFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        dtype = df.schema[f.source]
        v = df.select(vector(f, dtype).alias("v"))["v"]
        missing = v.is_null().to_numpy()
        x = np.zeros((df.height, f.size), np.float64)
        if (~missing).any():
            x[~missing] = np.asarray(v.drop_nulls().list.to_array(f.size).to_numpy(), np.float64).reshape(-1, f.size)
        out: Columns[np.ndarray] = Columns()
        for k in range(f.size):
            fit = fitted.numeric[f.component(k)]
            out.numeric.append((x[:, k] - fit.mean) / fit.std)
        if fitted.numeric[f.component(0)].indicator:
            out.indicators.append(missing.astype(np.float32))
        return out

    def graph(self, f: DenseFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from onnx import TensorProto

        from recsys_mtl.features.graph import numeric

        x = f.source  # (B, size) double, a missing vector = a row of NaN
        hint = f.name
        axis1 = b.const(np.array([1], np.int64), "axis1")
        nan = b.op("IsNaN", [x], f"{hint}.isnan")
        any_nan = b.op("ReduceMax", [b.op("Cast", [nan], f"{hint}.nanf", to=TensorProto.DOUBLE), axis1], f"{hint}.missing",
                       keepdims=1)
        missing = b.op("Cast", [any_nan], f"{hint}.missingb", to=TensorProto.BOOL)  # (B, 1)
        if f.normalize:
            zeroed = b.op("Where", [nan, b.const(np.array(0.0), "zero"), x], f"{hint}.zeroed")
            norm = b.op("Sqrt", [b.op("ReduceSumSquare", [zeroed, axis1], f"{hint}.sq", keepdims=1)], f"{hint}.norm")
            big = b.op("Greater", [norm, b.const(np.array(NORM_EPS), "eps")], f"{hint}.nonzero")
            x = b.op("Where", [big, b.op("Div", [x, norm], f"{hint}.unit"), x], f"{hint}.normalized")
        # a missing row → NaN in every component, so the shared numeric chain imputes 0 and flags it
        x = b.op("Where", [missing, b.const(np.array(np.nan), "nan"), x], f"{hint}.masked")
        out: Columns[str] = Columns()
        for k in range(f.size):
            fit = fitted.numeric[f.component(k)]
            col = b.op("Gather", [x, b.const(np.array(k, np.int64), "k")], f"{hint}.{k}", axis=1)
            value, indicator = numeric(b, col, fit, f.component(k))
            out.numeric.append(value)
            if fit.indicator:
                out.indicators.append(indicator)
        return out
