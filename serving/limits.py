"""The range a value may take where it is used: one rule for training, export and the server.

A value checked in one type and used in another is the gap this module closes. JSON and Parquet
numbers are float64; the model computes in float32. A number finite in float64 (``1e300``) turns
into ``inf`` at the float32 cast and the scores into NaN. So:

* a numeric input's **usable range** (:func:`numeric_range`) is the set of raw float64 values whose
  fitted transform (impute -> clip -> signed log1p -> standardize) stays within float32's range
  (:data:`FLOAT32_LIMIT`, a hair inside ``finfo(float32).max`` so the last rounding cannot step
  past it). Bucketed features map any finite value to a bucket, so their range is unbounded; a
  clip bound inside the range makes that side unbounded too. Training refuses a row outside it
  (:mod:`recsys_mtl.features.value_limits`), export writes it into ``metadata.json`` (``limits``) and
  the server answers 422 naming the field and row;
* any other float the model reads as float32 (a condition such as a task preference, a regression
  label) must lie within ``±FLOAT32_LIMIT`` (:func:`first_beyond_float32`);
* an integer stored as int64 must lie within ``[INT64_MIN, INT64_MAX]`` (:func:`int64_problem`).

numpy only: the server imports this without torch or recsys_mtl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the largest magnitude a float32 holds, less a relative 1e-6 margin for the final rounding
FLOAT32_LIMIT = float(np.finfo(np.float32).max) * (1 - 1e-6)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: |y| above this makes expm1(y) overflow float64: every raw value maps inside the range
_EXPM1_MAX = 709.0


@dataclass(frozen=True)
class NumericRange:
    """Raw float64 values in ``[lo, hi]`` are usable (``±inf``: unbounded on that side); NaN
    (missing) is always usable: it becomes the fitted impute value."""

    lo: float = -math.inf
    hi: float = math.inf

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.lo) or math.isfinite(self.hi)

    def first_outside(self, x: np.ndarray) -> int | None:
        """Index of the first value of ``x`` (float64, (N,)) outside the range, else None."""
        if not self.bounded:
            return None
        with np.errstate(invalid="ignore"):
            bad = (x < self.lo) | (x > self.hi)
        return int(np.argmax(bad)) if bad.any() else None

    def describe(self) -> str:
        return f"[{self.lo:.6g}, {self.hi:.6g}]"

    def to_json(self) -> list[float | None]:
        return [None if math.isinf(self.lo) else self.lo, None if math.isinf(self.hi) else self.hi]

    @classmethod
    def from_json(cls, value: Any, where: str) -> NumericRange:
        ok = isinstance(value, list) and len(value) == 2 and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) for v in value)
        if not ok:
            raise ValueError(f"{where}: expected [low, high] (numbers or null), got {str(value)[:80]}")
        lo = -math.inf if value[0] is None else float(value[0])
        hi = math.inf if value[1] is None else float(value[1])
        if lo > hi:
            raise ValueError(f"{where}: low {lo} > high {hi}")
        return cls(lo, hi)


def numeric_range(*, mean: float, std: float, clip_min: float | None, clip_max: float | None, log1p: bool,
                  bucketed: bool) -> NumericRange:
    """The raw values whose transform ``(g(clip(x)) - mean) / std`` stays within ±FLOAT32_LIMIT,
    ``g`` the signed log1p when ``log1p`` else the identity (the fitted transform's inverse)."""
    if bucketed:
        return NumericRange()
    y_lo, y_hi = mean - FLOAT32_LIMIT * std, mean + FLOAT32_LIMIT * std  # may be ±inf: unbounded
    lo, hi = (_signed_expm1(y_lo), _signed_expm1(y_hi)) if log1p else (y_lo, y_hi)
    if clip_min is not None and lo <= clip_min <= hi:
        lo = -math.inf  # everything below is clipped up to a usable value
    if clip_max is not None and lo <= clip_max <= hi:
        hi = math.inf
    return NumericRange(lo, hi)


def _signed_expm1(y: float) -> float:
    if not math.isfinite(y) or abs(y) > _EXPM1_MAX:
        return math.copysign(math.inf, y)
    return math.copysign(math.expm1(abs(y)), y)


def first_beyond_float32(x: np.ndarray) -> int | None:
    """Index of the first finite value of ``x`` (float64) beyond ±FLOAT32_LIMIT, else None (NaN ignored)."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(x) > FLOAT32_LIMIT
    return int(np.argmax(bad)) if bad.any() else None


def int64_problem(value: int) -> str | None:
    """Why the Python int ``value`` cannot be stored as int64, else None."""
    if INT64_MIN <= value <= INT64_MAX:
        return None
    return f"{_short(value)} is beyond the int64 range [-2**63, 2**63 - 1]"


def first_int64_overflow(raw: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, problem) of the first integer in ``raw`` (parsed YAML / JSON: dicts, lists,
    scalars) beyond int64; counts and sizes reach numpy and torch as int64, where a larger Python
    int is an OverflowError deep inside a library."""
    if isinstance(raw, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in raw.items())
    elif isinstance(raw, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(raw))
    elif isinstance(raw, int) and not isinstance(raw, bool):
        problem = int64_problem(raw)
        return (path or "value", problem) if problem else None
    else:
        return None
    for sub, value in items:
        found = first_int64_overflow(value, sub)
        if found:
            return found
    return None


def _short(value: int) -> str:
    text = str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    return text


def limits_to_json(ranges: dict[str, NumericRange]) -> dict[str, list[float | None]]:
    """``metadata.json``'s ``limits``: input name -> [low, high], only the bounded inputs."""
    return {name: r.to_json() for name, r in ranges.items() if r.bounded}


def limits_from_json(raw: Any) -> dict[str, NumericRange]:
    """``metadata.json``'s ``limits`` back (absent in older exports: no bounds)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("'limits' must be an object (input name -> [low, high])")
    return {str(k): NumericRange.from_json(v, f"limits[{str(k)[:80]!r}]") for k, v in raw.items()}


def feed_problem(feed: dict[str, np.ndarray], ranges: dict[str, NumericRange]) -> tuple[str, int, str] | None:
    """(input, row, message) for the first raw value of ``feed`` outside its input's usable range."""
    for name, r in ranges.items():
        x = feed.get(name)
        if x is None:
            continue
        row = r.first_outside(np.asarray(x, dtype=np.float64))
        if row is not None:
            value = float(np.asarray(x)[row])
            return name, row, (f"{value:.6g} is outside the range this model can use, {r.describe()}: beyond it the "
                               "standardized value overflows float32 (the model's type) and the scores would be NaN")
    return None
