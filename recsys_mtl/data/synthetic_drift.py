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
  idiosyncratic part, an AR(1) process renewing a share ``drift`` of its variance every period:
  a memorised per-id effect goes stale by the test period. (A random walk was tried first and
  kept for the cold-start scenario: it stays correlated with its past, so memorising ids paid
  off and the network beat LightGBM on ``click`` by 0.07 AUC.)
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
from typing import Callable

import numpy as np
import polars as pl

from recsys_mtl.data.readers import write_parquet_atomic

TASKS = ("click", "convert", "quick")
#: bumped whenever the same config would generate other rows (part of the cache file's name)
VERSION = 3
#: scale of the idiosyncratic (drifting) id effects in the drift scenario's logits
IDIOSYNCRATIC = 0.5


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
    drift: float = 0.6
    #: scale of every id effect in the logits
    id_scale: float = 0.6
    missing_rate: float = 0.02
    seed: int = 0
    #: which table: "drift" (above) or "cold_start" (see :func:`cold_start`)
    scenario: str = "drift"
    #: cold_start: share of the last period's rows by users first seen then
    cold_share: float = 0.8

    def __post_init__(self) -> None:
        if self.periods < 3:
            raise ValueError(f"periods must be at least 3 (train, valid, test), got {self.periods}")
        if self.rows < 10 * self.periods:
            raise ValueError(f"rows must be at least 10 per period, got {self.rows} for {self.periods} periods")
        if self.users < 2 or self.items < 2:
            raise ValueError("users and items must be at least 2")
        if not 0 <= self.new_id_rate < 1:
            raise ValueError(f"new_id_rate must be in [0, 1), got {self.new_id_rate}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {self.scenario!r}")
        if not 0 <= self.cold_share <= 1:
            raise ValueError(f"cold_share must be in [0, 1], got {self.cold_share}")
        if self.zipf <= 0 or self.drift < 0 or self.id_scale < 0:
            raise ValueError("zipf must be positive, drift and id_scale non-negative")


@dataclass
class _Ids:
    """One id column's population: (n,) weights and birth periods, (n, T) stable effects, (P, n, T) drifting effects."""

    weight: np.ndarray
    birth: np.ndarray
    stable: np.ndarray
    walk: np.ndarray


def _ids(n: int, cfg: DriftConfig, rng: np.random.Generator, renewal: bool = False) -> _Ids:
    """``renewal``: the idiosyncratic effects are an AR(1) process that renews a share ``drift`` of
    its variance every period (stationary std ~1: what was memorised fades) instead of a random
    walk with step std ``drift`` (which stays correlated with its past for ever)."""
    weight = 1.0 / np.arange(1, n + 1) ** cfg.zipf
    weight = weight[rng.permutation(n)]  # id number carries no popularity
    birth = np.where(rng.random(n) < cfg.new_id_rate, rng.integers(1, cfg.periods, size=n), 0)
    logw = np.log(weight)
    pop = (logw - logw.mean()) / logw.std()
    # stable part: log-popularity with a task-specific sign and size
    stable = np.outer(pop, rng.normal(0, 0.7, size=len(TASKS)))
    # idiosyncratic part: shared across tasks + task-specific, then a random walk over periods
    start = 0.7 * rng.standard_normal((n, 1)) + 0.7 * rng.standard_normal((n, len(TASKS)))
    noise = rng.standard_normal((cfg.periods - 1, n, len(TASKS)))
    if renewal:
        keep, new = np.sqrt(1.0 - min(cfg.drift, 1.0)), np.sqrt(min(cfg.drift, 1.0))
        walk = [start]
        for step in noise:
            walk.append(keep * walk[-1] + new * step)
        return _Ids(weight, birth, stable, np.stack(walk))
    walk = start[None] + np.concatenate([np.zeros((1, n, len(TASKS))), np.cumsum(cfg.drift * noise, axis=0)])
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
    """The whole table of ``cfg.scenario``, rows in period order."""
    return SCENARIOS[cfg.scenario](cfg)


def drift(cfg: DriftConfig) -> pl.DataFrame:
    """The drift table (see the module docstring for the columns)."""
    rng = np.random.default_rng(cfg.seed)
    n, P = cfg.rows, cfg.periods
    period = np.minimum(np.arange(n) * P // n, P - 1)
    phase = period / (P - 1)  # 0 .. 1 over the periods

    users, items = _ids(cfg.users, cfg, rng, renewal=True), _ids(cfg.items, cfg, rng, renewal=True)
    u, i = _draw(users, period, rng), _draw(items, period, rng)
    # (N, T) id effects at the row's period: the popularity-linked part carries over to rare and new
    # ids; the idiosyncratic part is small and its random walk soon outweighs what was memorised
    id_effect = cfg.id_scale * (users.stable[u] + items.stable[i]) + IDIOSYNCRATIC * (users.walk[period, u] + items.walk[period, i])

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
               + 1.0 * (temp < 2) * (precip > 0.5) + 0.7 * (hour >= 20) * (distance > 1500)
               + 0.3 * id_effect[:, 0])
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


def cold_start(cfg: DriftConfig) -> pl.DataFrame:
    """Cold-start recommendation: most users of the last period were never seen before.

    ``users`` long-tail users are active over every period; ``users // 2`` new users appear in the
    last period only and draw a share ``cold_share`` of its rows. Items (``items``, long tail)
    are stable. Side information known for every user and item: ``age`` (numeric), ``region``
    (20), ``genre`` (18), ``year`` (numeric). Tasks: ``rating`` (1-5, regression) =
    3.6 + user bias + item bias (popularity-linked plus idiosyncratic, drifting by ``drift`` per
    period) + a genre × age-band taste + noise, rounded and clipped; ``complete`` (binary) from
    the same latent score with its own noise. A bias model cannot score new users beyond their
    items' biases; the side information can.
    """
    rng = np.random.default_rng(cfg.seed)
    n, P = cfg.rows, cfg.periods
    period = np.minimum(np.arange(n) * P // n, P - 1)
    old = 1.0 / np.arange(1, cfg.users + 1) ** cfg.zipf
    n_new = max(cfg.users // 2, 1)
    user = np.empty(n, dtype=np.int64)
    cold = (period == P - 1) & (rng.random(n) < cfg.cold_share)
    user[~cold] = rng.choice(cfg.users, size=int((~cold).sum()), p=old / old.sum())
    user[cold] = cfg.users + rng.integers(0, n_new, size=int(cold.sum()))
    items = _ids(cfg.items, cfg, rng)
    item = _draw(items, np.zeros(n, dtype=np.int64), rng)

    n_users = cfg.users + n_new
    age = rng.uniform(18, 70, size=n_users)
    region = rng.integers(0, 20, size=n_users)
    genre = rng.integers(0, 18, size=cfg.items)
    year = rng.integers(1960, 2025, size=cfg.items).astype(np.float64)
    band = np.digitize(age, [25, 35, 50])
    taste = rng.normal(0, 0.5, size=(18, 4))
    region_eff = rng.normal(0, 0.2, 20)
    user_bias = 0.5 * rng.standard_normal(n_users) + 0.01 * (age - 40) + region_eff[region]
    item_bias = cfg.id_scale * (items.stable[item, 0] + items.walk[period, item, 0])
    score = user_bias[user] + item_bias + taste[genre[item], band[user]] + 0.004 * (year[item] - 1990)
    score = score - score.mean()  # popular items' biases need not average out: centre the ratings at 3.6
    rating = np.clip(np.round(3.6 + score + rng.normal(0, 0.8, size=n)), 1, 5)
    complete = rng.random(n) < _sigmoid(-0.2 + 1.5 * score + 0.3 * (year[item] > 2010))
    return pl.DataFrame({
        "period": period.astype(np.int32),
        "user_id": np.char.add("u", user.astype(str)),
        "item_id": np.char.add("i", item.astype(str)),
        "age": age[user],
        "region": np.char.add("r", region[user].astype(str)),
        "genre": np.char.add("g", genre[item].astype(str)),
        "year": year[item],
        "rating": rating,
        "complete": complete.astype(np.int8),
    })


#: scenario name → table generator
SCENARIOS: dict[str, Callable[[DriftConfig], pl.DataFrame]] = {"drift": drift, "cold_start": cold_start}


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
    write_parquet_atomic(generate(cfg), path, "the synthetic data cache")  # runs started together may write the same cache
    return path
