"""``expression``: a number computed from raw numeric columns (e.g. ``clicks / views``),
then the usual numeric treatment (missing policy, clip, signed log1p, standardize or quantile buckets).

The expression language is :mod:`recsys_mtl.features.safe_expression` (parsed, never evaluated as
Python): ``+ - * /``, ``log`` / ``log1p`` / ``exp`` / ``sqrt`` / ``abs``, ``least`` / ``greatest``
(``min`` / ``max``), ``coalesce``, comparisons, ``AND`` / ``OR`` / ``NOT`` and ``CASE WHEN``. Training
computes it with polars, the exported graph with ONNX operators; both read a result that is not
finite (division by zero, ``log`` of a non-positive number, ...) or that has a missing operand as
*missing*, which the feature's ``missing`` policy then imputes (with its indicator). An expression
outside the subset is refused when the spec is read (``recsys-mtl validate``), naming the operator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, Fitted
from recsys_mtl.features.fitted import FittedNumeric
from recsys_mtl.features.kinds.numeric import ClipConfig, MissingPolicy
from recsys_mtl.features.numeric_fit import NumericColumn, fit_numeric_columns
from recsys_mtl.features.one_number import OneNumberKind
from recsys_mtl.features.registry import register
from recsys_mtl.features.safe_expression import ExpressionError, Node, columns, parse, to_onnx, to_polars
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder


class ExpressionFeature(StrictModel):
    """A numeric feature defined by an arithmetic expression over raw numeric columns."""

    kind: Literal["expression"]
    """`expression`"""
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec)"""
    expression: str = Field(min_length=1, max_length=4000)
    """e.g. ``"log(1 + clicks) - log(1 + views)"`` or ``"CASE WHEN qty > 0 THEN price / qty END"``"""
    missing: MissingPolicy = MissingPolicy()
    """what a null or NaN result becomes, and whether a missing indicator column is added"""
    clip: ClipConfig | None = None
    """clip the result to `{min, max}` before any transform (null: no clipping)"""
    log1p: bool = False
    """apply the signed log1p, sign(x)·log(1 + |x|), after clipping"""
    standardize: bool = True
    """subtract the train mean and divide by the train standard deviation"""
    quantile_buckets: int | None = Field(None, ge=2)
    """embed the result's train-quantile bucket (this many buckets) instead of the number (null: off)"""
    embedding_dim: int = Field(8, ge=1)
    """width of the bucket embedding (with `quantile_buckets`)"""

    @field_validator("expression")
    @classmethod
    def _supported(cls, text: str) -> str:
        try:
            tree = parse(text)
        except ExpressionError as exc:
            raise ValueError(f"{text[:80]!r}: {exc}") from None
        if not columns(tree):
            raise ValueError(f"{text[:80]!r} reads no column (a constant is not a feature)")
        return text

    @property
    def tree(self) -> Node:
        return parse(self.expression)


def _column(f: ExpressionFeature) -> NumericColumn:
    return NumericColumn(
        name=f.name, source=f.expression, what=f"expression feature {f.name!r}", raw=to_polars(f.tree),
        impute=f.missing.impute, impute_constant=f.missing.value, indicator=f.missing.indicator,
        clip_min=f.clip.min if f.clip else None, clip_max=f.clip.max if f.clip else None,
        log1p=f.log1p, standardize=f.standardize, quantile_buckets=f.quantile_buckets,
    )


@register
class Expression(OneNumberKind[ExpressionFeature]):
    what = "expression feature"
    name = "expression"
    spec = ExpressionFeature
    order = 5
    summary = "a number computed from numeric columns (+ - * /, log, least/greatest, comparisons, CASE WHEN) → numeric treatment"
    plain = False

    def inputs(self, f: ExpressionFeature) -> list[InputSpec]:
        return [InputSpec(c, f.name, "numeric") for c in columns(f.tree)]

    def check_frame(self, f: ExpressionFeature, df: pl.DataFrame, where: str) -> None:
        for c in columns(f.tree):
            dtype = df.schema[c]
            if not (dtype.is_numeric() or dtype == pl.Null or dtype == pl.String):
                raise DataError(f"{where}: column {c!r} (expression feature {f.name!r}) must be numeric, got {dtype}")
            if dtype == pl.String:  # numbers as text (a CSV read as strings), as a numeric feature takes them
                values = df[c].drop_nulls()
                bad = values.filter(values.cast(pl.Float64, strict=False).is_null())
                if bad.len():
                    raise DataError(f"{where}: column {c!r} (expression feature {f.name!r}) has non-numeric value {bad[0]!r}")
            if dtype.is_float() or dtype == pl.String:
                inf = df[c].cast(pl.Float64, strict=False).is_infinite()
                if inf.any():
                    raise DataError(f"{where}: column {c!r} (expression feature {f.name!r}) has an infinite value at "
                                    f"row {int(inf.arg_max())}; write missing values as null or NaN")  # type: ignore[arg-type]

    def fit(self, fs: list[ExpressionFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        return fit_numeric_columns([_column(f) for f in fs], lf, where)

    def source(self, f: ExpressionFeature) -> str:
        return f.expression

    def transform(self, f: ExpressionFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        fit = fitted.numeric[f.name]
        values, missing = fit.transform(df.select(to_polars(f.tree)).to_series())
        return self.encoded(fit, values, missing)

    def graph(self, f: ExpressionFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        return self.graph_from(f, b, fitted, to_onnx(f.tree, b, f.name))
