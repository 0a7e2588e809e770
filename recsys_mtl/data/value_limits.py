"""Training's side of :mod:`serving.limits`: values refused where they would leave the type they
are used in, named by column (or task) and row.

* wherever a frame is checked (the preprocessing fit, every transform, ``validate --data``), a
  numeric column's value after clip / signed log1p must be within float32's range
  (:func:`check_float32_magnitudes`): otherwise the mean and standard deviation are computed from a
  number the model cannot hold, and every row trains to NaN;
* at every transform (train, validation, test, each streamed row group, export parity rows), a
  standardized value must be within float32's range (:func:`check_transformed`): the same rule the
  server applies to a request, through :func:`fitted_range`;
* a regression label must be within float32's range (:func:`check_label`).

Every integer of a spec or pipeline fits int64 (:func:`serving.limits.first_int64_overflow`, checked
when the YAML is validated).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_mtl.data.fitted import FittedNumeric
from recsys_mtl.data.streaming_fit import _transformed
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import FeatureSpec, NumericFeature
from serving.limits import FLOAT32_LIMIT, NumericRange, first_beyond_float32, numeric_range


def fitted_range(fitted: FittedNumeric) -> NumericRange:
    """The raw values ``fitted`` turns into float32-representable model inputs (exported as ``limits``)."""
    return numeric_range(mean=fitted.mean, std=fitted.std, clip_min=fitted.clip_min, clip_max=fitted.clip_max,
                         log1p=fitted.log1p, bucketed=fitted.boundaries is not None)


def check_float32_magnitudes(spec: FeatureSpec, frame: pl.DataFrame | pl.LazyFrame, where: str) -> None:
    """Every numeric value after clip / log1p within ±FLOAT32_LIMIT: one aggregation (streamed over
    a LazyFrame), and a second query for the first row only when a column fails."""
    feats = [f for f in spec.numeric if f.quantile_buckets is None]
    if not feats:
        return
    lf = frame.lazy()
    beyond = [_beyond_float32(f) for f in feats]
    counts = lf.select([b.sum().alias(f"n{i}") for i, b in enumerate(beyond)]).collect().row(0)
    for i, f in enumerate(feats):
        if counts[i]:
            row = int(lf.select(beyond[i].arg_true().first()).collect().item())  # arg_max of a mask is not the first
            value = lf.select(pl.col(f.source).cast(pl.Float64)).slice(row, 1).collect().item()
            raise DataError(
                f"{where}: column {f.source!r} (numeric feature {f.name!r}) has {int(counts[i])} value(s) beyond "
                f"float32's range ±{FLOAT32_LIMIT:.4g}, first at row {row} ({value:.6g}): the model computes in float32; "
                "clip the feature (clip: {max: ...}), use log1p, or fix the row"
            )


def _beyond_float32(f: NumericFeature) -> pl.Expr:
    x = _transformed(f, 0.0)
    return x.is_finite() & (x.abs() > FLOAT32_LIMIT)  # ±inf has its own error


def check_transformed(fitted: FittedNumeric, raw: pl.Series, values: np.ndarray, where: str) -> None:
    """``values`` (N,) float64, the standardized ``raw`` column, must be within float32's range."""
    if fitted.boundaries is not None:
        return
    row = first_beyond_float32(values)
    if row is not None:
        raise DataError(
            f"{where}: column {fitted.source!r} (numeric feature {fitted.name!r}) row {row}: value {raw[row]!r} is "
            f"outside the range this model can use, {fitted_range(fitted).describe()}: standardized with the "
            f"train statistics (mean {fitted.mean:.6g}, std {fitted.std:.6g}) it overflows float32"
        )


def check_fitted_state(numeric: dict[str, FittedNumeric], targets: dict[str, tuple[float, float]], path: object) -> None:
    """A loaded ``preprocessing.json``: the statistics the model reads (means, standard deviations,
    quantiles of numeric features; means and deviations of regression targets) within float32's
    range. A fit never writes others (its values are checked first); an edited file might."""
    fields: list[tuple[str, float]] = []
    for name, f in numeric.items():
        fields += [(f"numeric.{name}.mean", f.mean), (f"numeric.{name}.std", f.std)]
        fields += [(f"numeric.{name}.quantiles[{i}]", q) for i, q in enumerate(f.quantiles or [])]
    for name, (mean, std) in targets.items():
        fields += [(f"targets.{name}.mean", mean), (f"targets.{name}.std", std)]
    for field, value in fields:
        if abs(value) > FLOAT32_LIMIT:
            raise DataError(f"{path}: {field}: {value:.6g} is beyond float32's range ±{FLOAT32_LIMIT:.4g} (the model's type)")


def check_label(values: np.ndarray, valid: np.ndarray, task: str, label: str, where: str) -> None:
    """Labels ``values`` (N,) float64 where ``valid`` (N,) bool, within float32's range."""
    row = first_beyond_float32(np.where(valid, values, 0.0))
    if row is not None:
        raise DataError(f"{where}: task {task!r}: label {label!r} at row {row} is {values[row]:.6g}, beyond "
                        f"float32's range ±{FLOAT32_LIMIT:.4g} (the type the loss is computed in)")
