"""``timestamp``: a datetime (or epoch-seconds) column → cyclical time of day / day of week, and the
elapsed time to a reference timestamp column, as numeric columns.

Time zones: every value is an instant, read in UTC. A naive datetime is taken as UTC; an aware one
is converted (its instant is kept, so ``2024-01-01T09:00+01:00`` is 08:00 UTC); a number is seconds
since 1970-01-01 UTC; a date is its midnight UTC. Hour of day and day of week are therefore UTC
ones: a spec wanting local time must give local wall-clock times as naive datetimes.

Outputs (each a column of the numeric matrix named ``<feature>.<output>``):

================ ====================================================================================
``hour_sin/cos`` sin / cos of 2π · (seconds since midnight UTC) / 86400: continuous time of day
``weekday_sin``  sin / cos of 2π · (seconds since Monday 00:00 UTC) / 604800: continuous day of week
``weekday_cos``
``elapsed``      (reference − timestamp) in ``elapsed_unit`` (e.g. request time − publish time),
                 signed log1p, standardized with train statistics
================ ====================================================================================

A missing timestamp gives 0 for the cyclical outputs (the centre of the circle) with a missing
indicator (``<feature>.hour_sin``'s, or ``weekday_sin``'s when hours are not chosen); ``elapsed`` is
missing when either timestamp is, imputed by the ``missing`` policy with its own indicator.

Serving: each timestamp column is a ``timestamp`` input, float64 epoch seconds (NaN = missing); the
server also converts Arrow timestamp / date columns (:mod:`serving.schema`). Training reads the same
instants in float64: ``epoch(unit) / ticks per second`` on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted
from recsys_mtl.features.fitted import QUANTILE_STEPS, FittedNumeric
from recsys_mtl.features.kinds.numeric import MissingPolicy
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.numeric_fit import NumericColumn, fit_numeric_columns
from recsys_mtl.features.registry import register
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

DAY, WEEK = 86_400.0, 604_800.0
#: 1970-01-01 was a Thursday: shifting by 3 days puts Monday 00:00 UTC at the start of each week
MONDAY_SHIFT = 3 * DAY
UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": DAY}
_TICKS = {"ns": 1e9, "us": 1e6, "ms": 1e3}
Cycle = Literal["hour", "weekday"]


class TimestampFeature(StrictModel):
    """A datetime / epoch-seconds column → cyclical hour and weekday, and elapsed time to ``reference``."""

    kind: Literal["timestamp"]
    """`timestamp`"""
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec)"""
    column: str | None = None
    """the raw datetime or epoch-seconds column read (default: `name`)"""
    cyclical: tuple[Cycle, ...] = ("hour", "weekday")
    """cyclical encodings to emit (sin and cos each)"""
    reference: str | None = Field(None, min_length=1)
    """a timestamp column to measure from: elapsed = reference − this column (e.g. request_time)"""
    elapsed_unit: Literal["seconds", "minutes", "hours", "days"] = "hours"
    """unit of the elapsed time to `reference`"""
    missing: MissingPolicy = MissingPolicy(impute="median")
    """imputation and indicator of ``elapsed`` (the cyclical outputs impute 0)"""

    @model_validator(mode="after")
    def _something(self) -> "TimestampFeature":
        if len(set(self.cyclical)) != len(self.cyclical):
            raise ValueError(f"cyclical: {list(self.cyclical)} lists an encoding twice")
        if not self.cyclical and self.reference is None:
            raise ValueError("cyclical is empty and no reference is given: the feature would emit nothing")
        if self.reference == self.source:
            raise ValueError("reference names the feature's own column")
        return self

    @property
    def source(self) -> str:
        return self.column or self.name

    def output(self, name: str) -> str:
        return f"{self.name}.{name}"


def epoch_seconds(column: str, dtype: pl.DataType) -> pl.Expr:
    """Float64 seconds since 1970-01-01 UTC (null = missing) of a datetime / date / number column."""
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):  # aware or naive: the stored value is the UTC instant
        return col.dt.epoch(dtype.time_unit).cast(pl.Float64) / _TICKS[dtype.time_unit]
    if dtype == pl.Date:
        return col.dt.epoch("s").cast(pl.Float64)
    return col.cast(pl.Float64).fill_nan(None)


@dataclass(frozen=True)
class _Output:
    name: str
    #: polars: epoch seconds of the column (and of the reference) → raw float64 value
    polars: Callable[[pl.Expr, pl.Expr | None], pl.Expr]
    #: ONNX: (builder, column tensor, reference tensor) → raw double tensor
    onnx: Callable[[Any, str, str | None], str]
    indicator: bool
    elapsed: bool = False


def _phase_polars(t: pl.Expr, period: float, shift: float) -> pl.Expr:
    s = t + shift
    return (s - (s / period).floor() * period) * (2 * math.pi / period)


def _phase_onnx(b: Any, t: str, period: float, shift: float, hint: str) -> str:
    s = b.op("Add", [t, b.const(np.array(shift), "shift")], hint)
    p = b.const(np.array(period), "period")
    floor = b.op("Mul", [b.op("Floor", [b.op("Div", [s, p], hint)], hint), p], hint)
    return b.op("Mul", [b.op("Sub", [s, floor], hint), b.const(np.array(2 * math.pi / period), "radians")], hint)


def _outputs(f: TimestampFeature) -> list[_Output]:
    out: list[_Output] = []
    for cycle in f.cyclical:
        period, shift = (DAY, 0.0) if cycle == "hour" else (WEEK, MONDAY_SHIFT)
        for fn, op in (("sin", "Sin"), ("cos", "Cos")):
            out.append(_Output(
                f"{cycle}_{fn}",
                lambda t, _r, period=period, shift=shift, fn=fn: getattr(_phase_polars(t, period, shift), fn)(),
                lambda b, t, _r, period=period, shift=shift, op=op, name=f"{f.name}.{cycle}": b.op(
                    op, [_phase_onnx(b, t, period, shift, name)], name),
                indicator=f.missing.indicator and not out,
            ))
    if f.reference is not None:
        unit = UNITS[f.elapsed_unit]
        out.append(_Output(
            "elapsed",
            lambda t, r, unit=unit: (r - t) / unit,  # type: ignore[operator]
            lambda b, t, r, unit=unit: b.op("Div", [b.op("Sub", [r, t], f"{f.name}.elapsed"),
                                                    b.const(np.array(unit), "unit")], f"{f.name}.elapsed"),
            indicator=f.missing.indicator, elapsed=True,
        ))
    return out


def _columns(f: TimestampFeature, schema: pl.Schema) -> list[NumericColumn]:
    t = epoch_seconds(f.source, schema[f.source])
    r = epoch_seconds(f.reference, schema[f.reference]) if f.reference is not None else None
    return [
        NumericColumn(
            name=f.output(o.name), source=f.source, what=f"timestamp feature {f.name!r}, output {o.name!r}",
            raw=o.polars(t, r), indicator=o.indicator,
            impute=f.missing.impute if o.elapsed else "zero", impute_constant=f.missing.value if o.elapsed else None,
            log1p=o.elapsed, standardize=o.elapsed,
        )
        for o in _outputs(f)
    ]


@register
class Timestamp(FeatureKind[TimestampFeature]):
    name = "timestamp"
    spec = TimestampFeature
    order = 6
    summary = "a datetime / epoch column → cyclical hour and weekday (sin, cos), signed-log elapsed time to a reference column"

    def inputs(self, f: TimestampFeature) -> list[InputSpec]:
        out = [InputSpec(f.source, f.name, "timestamp")]
        return out + ([InputSpec(f.reference, f.name, "timestamp")] if f.reference is not None else [])

    def check_frame(self, f: TimestampFeature, df: pl.DataFrame, where: str) -> None:
        for c in (f.source, f.reference):
            if c is None:
                continue
            dtype = df.schema[c]
            if not (isinstance(dtype, pl.Datetime) or dtype == pl.Date or dtype.is_numeric() or dtype == pl.Null):
                raise DataError(f"{where}: column {c!r} (timestamp feature {f.name!r}) must be a datetime, a date or "
                                f"epoch seconds, got {dtype}" + ("; parse the text first (e.g. read_csv(try_parse_dates="
                                                                 "True))" if dtype == pl.String else ""))
            if dtype.is_float():
                inf = df[c].is_infinite()
                if inf.any():
                    raise DataError(f"{where}: column {c!r} (timestamp feature {f.name!r}) has an infinite value at "
                                    f"row {int(inf.arg_max())}")  # type: ignore[arg-type]

    def fit(self, fs: list[TimestampFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        schema = lf.collect_schema()
        return fit_numeric_columns([c for f in fs for c in _columns(f, schema)], lf, where)

    def shape_only(self, f: TimestampFeature) -> dict[str, FittedNumeric]:
        return {
            f.output(o.name): FittedNumeric(f.output(o.name), f.source, 0.0, o.indicator, None, None, o.elapsed, 0.0, 1.0,
                                            quantiles=[i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)])
            for o in _outputs(f)
        }

    def check_state(self, f: TimestampFeature, fitted: Fitted, path: Path) -> None:
        for o in _outputs(f):
            n = fitted.numeric.get(f.output(o.name))
            if n is None:
                raise DataError(f"{path}: numeric: no entry for {f.output(o.name)!r} (timestamp feature {f.name!r})")
            if n.boundaries is not None or not n.std > 0:
                raise DataError(f"{path}: numeric.{f.output(o.name)}: needs std > 0 and no boundaries")

    def layout(self, f: TimestampFeature, fitted: Fitted, lay: Layout) -> None:
        for o in _outputs(f):
            lay.numeric.append(f.output(o.name))
            if fitted.numeric[f.output(o.name)].indicator:
                lay.indicators.append(f.output(o.name))

    def transform(self, f: TimestampFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        raw = df.select([c.raw.alias(c.name) for c in _columns(f, df.schema)])
        out: Columns[np.ndarray] = Columns()
        for o in _outputs(f):
            fit = fitted.numeric[f.output(o.name)]
            values, missing = fit.transform(raw[f.output(o.name)])
            out.numeric.append(values)
            if fit.indicator:
                out.indicators.append(missing.astype(np.float32))
        return out

    def graph(self, f: TimestampFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from recsys_mtl.features.graph import numeric

        out: Columns[str] = Columns()
        for o in _outputs(f):
            fit = fitted.numeric[f.output(o.name)]
            value, indicator = numeric(b, o.onnx(b, f.source, f.reference), fit, f.output(o.name))
            out.numeric.append(value)
            if fit.indicator:
                out.indicators.append(indicator)
        return out
