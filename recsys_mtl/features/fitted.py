"""What a preprocessing fit learns, one piece per table and numeric column.

:class:`FittedTable` (a vocabulary or a hashing rule), :class:`FittedNumeric` (imputation,
clipping, scaling, quantiles) and :class:`FittedPairCounts` (item-to-item counts) are computed by :mod:`recsys_mtl.data.fit_statistics` and held by
:class:`recsys_mtl.data.preprocess.Preprocessor`; they live apart from both so that the fit and
the preprocessor each import them, and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmh3
import numpy as np
import polars as pl

#: stored numeric quantiles: q(k / QUANTILE_STEPS), k = 0..QUANTILE_STEPS
QUANTILE_STEPS = 64
MISSING, OOV, FIRST = 0, 1, 2


@dataclass
class FittedTable:
    """The index of one embedding table: a fitted vocabulary or a hashing rule."""

    name: str
    vocab: list[str] | None = None
    hash_buckets: int | None = None
    hash_seed: int = 0
    #: train occurrences of each vocabulary entry (aligned with ``vocab``); None for hashed tables
    #: and for preprocessing fitted before counts were stored (rarity-aware regularisation reads it)
    counts: list[int] | None = None

    @property
    def size(self) -> int:
        return FIRST + (len(self.vocab) if self.vocab is not None else self.hash_buckets)  # type: ignore[arg-type]

    def lookup(self, values: pl.Series) -> np.ndarray:
        """String values → int64 indices (null → MISSING, unseen → OOV)."""
        values = values.cast(pl.String)
        if self.vocab is not None:
            mapping = {v: i + FIRST for i, v in enumerate(self.vocab)}
        else:
            uniq = values.drop_nulls().unique().to_list()
            mapping = {v: FIRST + mmh3.hash(v, self.hash_seed, signed=False) % self.hash_buckets for v in uniq}  # type: ignore[operator]
        idx = values.replace_strict(mapping, default=OOV, return_dtype=pl.Int64).to_numpy()
        return np.where(values.is_null().to_numpy(), MISSING, idx)  # replace_strict sends null to the default


@dataclass
class FittedNumeric:
    name: str
    source: str
    impute_value: float
    indicator: bool
    clip_min: float | None
    clip_max: float | None
    log1p: bool
    mean: float
    std: float
    #: quantile bucket edges; when set, the feature is a bucket index, not a number.
    boundaries: list[float] | None = None
    #: train quantiles q(k/64), k = 0..64, of the transformed value the model sees (the bins of
    #: piecewise-linear numeric embeddings); None for bucketed features and older fitted files
    quantiles: list[float] | None = None

    def apply(self, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Raw numbers → (transformed float64 values, missing indicator)."""
        x = values.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
        missing = np.isnan(x)
        x = np.where(missing, self.impute_value, x)
        if self.clip_min is not None or self.clip_max is not None:
            x = np.clip(x, self.clip_min, self.clip_max)
        if self.log1p:
            x = np.sign(x) * np.log1p(np.abs(x))  # signed, so negative values stay finite
        return x, missing

    def transform(self, values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        x, missing = self.apply(values)
        if self.boundaries is not None:
            return np.searchsorted(np.asarray(self.boundaries), x, side="right") + FIRST, missing
        return (x - self.mean) / self.std, missing


@dataclass
class FittedPairCounts:
    """Symmetric counts between pairs of keys, stored sparse (upper triangle): what a kind learning
    an item-to-item table fits (``cooccurrence``); ``first[i] < second[i]`` index ``keys``, sorted."""

    #: the feature that fitted it
    name: str
    #: the raw column it was counted on
    source: str
    #: the counted keys (the most frequent items), most frequent first
    keys: list[str]
    first: list[int]
    second: list[int]
    counts: list[int]
