"""Generated tabular data with a time split, drift and long-tail ids: where trees beat networks.

It reproduces the failure of issue #21 (a held-out dataset where a per-task LightGBM beats the
default MMoE) with data anyone can regenerate, so a fix is measured before and after.

Rows are spread evenly over ``periods`` consecutive periods (``period`` = 0 .. P-1, the time
column). Train on the earlier periods, select on the next, test on the last
(:func:`time_split`).

* **Long-tail ids**: ``user_id`` and ``item_id``, ``users`` / ``items`` values each; an id of
  popularity rank r is drawn with weight ∝ r^-zipf among the ids alive at that period. A share
  ``new_id_rate`` of the ids is born at a later period (uniform over 1 .. P-1), so some ids of
  the test period were never seen in training, and the rarest ids of the tail are seen a
  handful of times at most.
* **Id effects** per task: a stable part that follows log-popularity (busy ids behave
  differently: what a frequency encoding can learn and carry to rare or new ids) plus an
  idiosyncratic part that takes a Gaussian random-walk step every period (``drift``): a memorised
  per-id effect goes stale by the test period.
* **Numerics** (weather- and schedule-like): ``temp`` (seasonal: its mean moves with the
  period), ``wind``, ``precip`` (zero-inflated), ``hour``, ``distance``, ``load``; a few values
  missing. Their effects include thresholds and interactions, and the weight of ``wind`` moves
  with the period.
* **Low-cardinality categoricals**: ``carrier`` (12), ``dow`` (7), ``region`` (20).
* **Three binary tasks**: ``click`` on every row; ``convert`` and ``quick`` are funnel stages
  observed only after a click (label 0 and masked where ``click = 0``). ``quick`` is mostly a
  function of the numerics (an easy task); ``click`` and ``convert`` lean on the ids.

Everything is drawn from one ``numpy`` generator seeded with ``seed``: the same config gives the
same frame, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

TASKS = ("click", "convert", "quick")


@dataclass(frozen=True)
class DriftConfig:
    rows: int = 150_000
    periods: int = 10
    users: int = 4000
    items: int = 4000
    #: popularity exponent of the ids (weight of rank r ∝ r^-zipf)
    zipf: float = 1.1
    #: share of ids born after period 0
    new_id_rate: float = 0.2
    #: std of an idiosyncratic id effect's random-walk step per period (its initial std is 1)
    drift: float = 0.35
    #: scale of every id effect in the logits
    id_scale: float = 0.6
    missing_rate: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.periods < 3:
            raise ValueError(f"periods must be at least 3 (train, valid, test), got {self.periods}")
        if self.rows < 10 * self.periods:
            raise ValueError(f"rows must be at least 10 per period, got {self.rows} for {self.periods} periods")
        if self.users < 2 or self.items < 2:
            raise ValueError("users and items must be at least 2")
        if not 0 <= self.new_id_rate < 1:
            raise ValueError(f"new_id_rate must be in [0, 1), got {self.new_id_rate}")
        if self.zipf <= 0 or self.drift < 0 or self.id_scale < 0:
            raise ValueError("zipf must be positive, drift and id_scale non-negative")


@dataclass
class _Ids:
    """One id column's population: (n,) weights and birth periods, (n, T) stable effects, (P, n, T) drifting effects."""

    weight: np.ndarray
    birth: np.ndarray
    stable: np.ndarray
    walk: np.ndarray


def _ids(n: int, cfg: DriftConfig, rng: np.random.Generator) -> _Ids:
    weight = 1.0 / np.arange(1, n + 1) ** cfg.zipf
    weight = weight[rng.permutation(n)]  # id number carries no popularity
    birth = np.where(rng.random(n) < cfg.new_id_rate, rng.integers(1, cfg.periods, size=n), 0)
    logw = np.log(weight)
    pop = (logw - logw.mean()) / logw.std()
    # stable part: log-popularity with a task-specific sign and size
    stable = np.outer(pop, rng.normal(0, 0.7, size=len(TASKS)))
    # idiosyncratic part: shared across tasks + task-specific, then a random walk over periods
    start = 0.7 * rng.standard_normal((n, 1)) + 0.7 * rng.standard_normal((n, len(TASKS)))
    steps = cfg.drift * rng.standard_normal((cfg.periods - 1, n, len(TASKS)))
    walk = start[None] + np.concatenate([np.zeros((1, n, len(TASKS))), np.cumsum(steps, axis=0)])
    return _Ids(weight, birth, stable, walk)


def _draw(ids: _Ids, period: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) id per row, drawn among the ids born by the row's period."""
    out = np.empty(len(period), dtype=np.int64)
    for t in np.unique(period):
        rows = np.flatnonzero(period == t)
        w = np.where(ids.birth <= t, ids.weight, 0.0)
        out[rows] = rng.choice(len(w), size=len(rows), p=w / w.sum())
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def generate(cfg: DriftConfig) -> pl.DataFrame:
    """The whole table, rows in period order (see the module docstring for the columns)."""
    rng = np.random.default_rng(cfg.seed)
    n, P = cfg.rows, cfg.periods
    period = np.minimum(np.arange(n) * P // n, P - 1)
    phase = period / (P - 1)  # 0 .. 1 over the periods

    users, items = _ids(cfg.users, cfg, rng), _ids(cfg.items, cfg, rng)
    u, i = _draw(users, period, rng), _draw(items, period, rng)
    # (N, T) id effects at the row's period
    id_effect = cfg.id_scale * (users.stable[u] + users.walk[period, u] + items.stable[i] + items.walk[period, i])

    carrier = rng.integers(0, 12, size=n)
    dow = rng.integers(0, 7, size=n)
    region = rng.integers(0, 20, size=n)
    carrier_eff, dow_eff, region_eff = rng.normal(0, 0.4, 12), rng.normal(0, 0.2, 7), rng.normal(0, 0.3, 20)

    temp = 12 + 10 * np.sin(2 * np.pi * (period / 12.0)) + region_eff[region] * 5 + rng.normal(0, 6, size=n)
    wind = rng.gamma(2.0, 4.0, size=n)
    precip = np.where(rng.random(n) < 0.7, 0.0, rng.exponential(3.0, size=n))
    hour = rng.integers(5, 24, size=n).astype(np.float64)
    distance = rng.lognormal(6.5, 0.7, size=n)
    load = rng.beta(5, 2, size=n)

    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 19))
    storm = (precip > 4.0) & (wind > 10.0)
    wind_w = 0.02 + 0.06 * phase  # the weight of wind moves over time
    base = -3.2 + 0.3 * np.sin(2 * np.pi * phase)
    z_click = (base + 0.9 * storm + 0.4 * rush + wind_w * wind + 0.4 * (precip > 1.0)
               + carrier_eff[carrier] + dow_eff[dow] + 0.8 * (load > 0.85) * (hour > 17)
               + 0.8 * id_effect[:, 0])
    z_convert = (-0.5 + 0.6 * (temp < 0) + 0.5 * np.tanh((distance - 900) / 300) * (1 - phase)
                 + 0.6 * (load > 0.9) - 0.3 * carrier_eff[carrier] + 1.0 * id_effect[:, 1])
    z_quick = (-0.6 + 2.4 * (distance < 500) - 2.2 * storm + 1.5 * ((hour < 10) & (load < 0.7))
               - 0.12 * (wind - 8) + 0.3 * id_effect[:, 2])

    click = rng.random(n) < _sigmoid(z_click)
    convert = click & (rng.random(n) < _sigmoid(z_convert))
    quick = click & (rng.random(n) < _sigmoid(z_quick))

    def missing(col: np.ndarray) -> np.ndarray:
        col = col.copy()
        col[rng.random(n) < cfg.missing_rate] = np.nan
        return col

    df = pl.DataFrame({
        "period": period.astype(np.int32),
        "user_id": np.char.add("u", u.astype(str)),
        "item_id": np.char.add("i", i.astype(str)),
        "carrier": np.char.add("c", carrier.astype(str)),
        "dow": np.char.add("d", dow.astype(str)),
        "region": np.char.add("r", region.astype(str)),
        "temp": missing(temp),
        "wind": missing(wind),
        "precip": missing(precip),
        "hour": hour,
        "distance": distance,
        "load": missing(load),
        "click": click.astype(np.int8),
        "convert": convert.astype(np.int8),
        "quick": quick.astype(np.int8),
    })
    return df.with_columns(pl.col(["temp", "wind", "precip", "load"]).fill_nan(None))


def time_split(df: pl.DataFrame, time_column: str, valid_periods: int = 1, test_periods: int = 1) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train, valid, test): the last ``test_periods`` distinct values of ``time_column`` are test,
    the ``valid_periods`` before them valid, every earlier one train."""
    if time_column not in df.columns:
        raise ValueError(f"time column {time_column!r} is not in the data (columns: {', '.join(df.columns)})")
    values = df.get_column(time_column).unique().sort().to_list()
    if len(values) < valid_periods + test_periods + 1:
        raise ValueError(f"time column {time_column!r} has {len(values)} distinct values; the split needs at least {valid_periods + test_periods + 1}")
    test_from = values[-test_periods]
    valid_from = values[-(test_periods + valid_periods)]
    t = pl.col(time_column)
    return df.filter(t < valid_from), df.filter((t >= valid_from) & (t < test_from)), df.filter(t >= test_from)


def write_parquet(cfg: DriftConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    generate(cfg).write_parquet(tmp)
    tmp.replace(path)  # atomic: an interrupted run never leaves a half-written cache
    return path
