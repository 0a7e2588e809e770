"""``numeric``: a number column → impute → clip → signed log1p → standardize, or quantile buckets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, Fitted
from recsys_mtl.features.fitted import FittedNumeric
from recsys_mtl.features.numeric_fit import NumericColumn, check_float32_magnitudes, fit_numeric_columns
from recsys_mtl.features.one_number import OneNumberKind
from recsys_mtl.features.registry import register
from recsys_mtl.features.value_limits import check_transformed
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder


class MissingPolicy(StrictModel):
    """What a numeric feature does with a missing value: null or NaN. ±inf is not missing: the
    data is refused, naming the column (see docs/input_limits.md)."""

    impute: Literal["mean", "median", "zero", "constant"] = "mean"
    """the value a missing entry takes: the train mean, median, zero, or `value`"""
    value: float | None = None
    """the constant imputed with `impute: constant`"""
    indicator: bool = True
    """add a 0/1 column that marks the imputed rows"""

    @model_validator(mode="after")
    def _constant_needs_value(self) -> "MissingPolicy":
        if self.impute == "constant" and self.value is None:
            raise ValueError("impute 'constant' needs a 'value'")
        return self


class ClipConfig(StrictModel):
    min: float | None = None
    """lower bound (null: none)"""
    max: float | None = None
    """upper bound (null: none)"""

    @model_validator(mode="after")
    def _ordered(self) -> "ClipConfig":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clip min {self.min} > max {self.max}")
        return self


class NumericFeature(StrictModel):
    """A numeric column: impute → clip → signed log1p → standardize, or quantile buckets.

    With ``quantile_buckets`` the value becomes a bucket index with its own embedding (bucket 0
    holds missing values); otherwise it enters the model as one standardized number.
    """

    kind: Literal["numeric"]
    """`numeric`"""
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec)"""
    column: str | None = None
    """the raw column read (default: `name`)"""
    missing: MissingPolicy = MissingPolicy()
    """what a null or NaN becomes, and whether a missing indicator column is added"""
    clip: ClipConfig | None = None
    """clip the value to `{min, max}` before any transform (null: no clipping)"""
    log1p: bool = False
    """apply the signed log1p, sign(x)·log(1 + |x|), after clipping"""
    standardize: bool = True
    """subtract the train mean and divide by the train standard deviation"""
    quantile_buckets: int | None = Field(None, ge=2)
    """embed the value's train-quantile bucket (this many buckets) instead of the number (null: off)"""
    embedding_dim: int = Field(8, ge=1)
    """width of the bucket embedding (with `quantile_buckets`)"""

    @property
    def source(self) -> str:
        return self.column or self.name


def _column(f: NumericFeature) -> NumericColumn:
    return NumericColumn(
        name=f.name, source=f.source, what=f"numeric feature {f.name!r}",
        raw=pl.col(f.source).cast(pl.Float64).fill_nan(None),
        impute=f.missing.impute, impute_constant=f.missing.value, indicator=f.missing.indicator,
        clip_min=f.clip.min if f.clip else None, clip_max=f.clip.max if f.clip else None,
        log1p=f.log1p, standardize=f.standardize, quantile_buckets=f.quantile_buckets,
    )


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


@register
class Numeric(OneNumberKind[NumericFeature]):
    name = "numeric"
    spec = NumericFeature
    order = 1
    summary = "a number column → impute (+ missing indicator), clip, signed log1p, standardize or quantile buckets"

    def inputs(self, f: NumericFeature) -> list[InputSpec]:
        return [InputSpec(f.source, f.name, "numeric")]

    def check_frame(self, f: NumericFeature, df: pl.DataFrame, where: str) -> None:
        dtype = df.schema[f.source]
        if not (dtype.is_numeric() or dtype == pl.String or dtype == pl.Null):
            raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) has dtype {dtype}")
        if dtype == pl.String:
            bad = df[f.source].drop_nulls().filter(df[f.source].drop_nulls().cast(pl.Float64, strict=False).is_null())
            if bad.len():
                raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) has non-numeric value {bad[0]!r}")
        _check_finite(f, df[f.source], where)
        check_float32_magnitudes([_column(f)], df.lazy(), where)

    def fit(self, fs: list[NumericFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        return fit_numeric_columns([_column(f) for f in fs], lf, where)

    def transform(self, f: NumericFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        fit = fitted.numeric[f.name]
        values, missing = fit.transform(df[f.source])
        check_transformed(fit, df[f.source], values, where)  # float64 here, float32 in the model
        return self.encoded(fit, values, missing)

    def graph(self, f: NumericFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        return self.graph_from(f, b, fitted, f.source)
