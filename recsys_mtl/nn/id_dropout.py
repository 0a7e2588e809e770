"""Id dropout: train the out-of-vocabulary row by mapping a share of training ids to it.

A vocabulary fitted on train holds every train value, so without this no training row ever
indexes the OOV row and every id unseen at serving time gets the row's random initial vector.
With a rate ``p`` per feature, each non-missing id of a training batch is replaced by the OOV
index with probability ``p`` (missing stays missing); the OOV row then learns the average
unknown id, and the model learns to rely on the other features for it. Evaluation and serving
are unchanged. On by default for high-cardinality tables (≥ ``min_vocab`` rows), where unseen
ids are common; off for small closed sets.

Dropout by count (``rare_count``, not in the default): an id seen ``n`` times in train is dropped
with probability ``p · min(1, rare_count / n)``, so rare ids, whose embeddings overfit their few
rows and which resemble the ids unseen at serving time, are replaced most often and frequent
ids, which carry reliable signal, rarely. Ids of tables without train counts keep ``p``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.features.fitted import FIRST, MISSING, OOV
from recsys_mtl.strict import ParamsModel


class IdDropoutConfig(ParamsModel):
    """An encoder option: ``id_dropout: {rate: 0.05, min_vocab: 1000, features: {user_id: 0.1}}``."""

    rate: float = Field(0.05, ge=0.0, lt=1.0)
    """share of a feature's training ids replaced by the OOV index"""
    min_vocab: int = Field(1000, ge=1)
    """the default rate applies to features whose table has at least this many rows"""
    features: dict[str, float] = {}
    """per-feature rates (any table size); 0 switches a feature off"""
    rare_count: int | None = Field(None, ge=1)
    """dropout by count: an id seen n times in train is dropped with rate · min(1, rare_count / n) (null: every id at the
    feature's rate)
    """

    def rate_for(self, feature: str, table_rows: int) -> float:
        if feature in self.features:
            return self.features[feature]
        return self.rate if table_rows >= self.min_vocab else 0.0


class IdDropout(nn.Module):
    """(B, C) or (B, L) int64 indices → the same shape with dropped ids set to OOV (training only)."""

    def __init__(
        self, table_rows: Sequence[int], features: Sequence[str], cfg: IdDropoutConfig,
        counts: Sequence[Sequence[int] | None] | None = None,
    ):
        """``counts``: per feature, the train count of each vocabulary entry (row FIRST + i), or None."""
        super().__init__()
        bad = {f: r for f, r in cfg.features.items() if not 0.0 <= r < 1.0}
        if bad:
            raise ValueError(f"id_dropout.features: rates must be in [0, 1), got {bad}")
        rates = [cfg.rate_for(f, n) for f, n in zip(features, table_rows)]
        self.rate_list = rates
        self.active = any(r > 0 for r in rates)
        self.register_buffer("rates", torch.tensor(rates, dtype=torch.float32), persistent=False)
        # by count: buffer id_rates_<i>, (rows,) rate per id of feature i, where by_count[i]
        self.by_count = [False] * len(rates)
        if cfg.rare_count is not None and counts is not None:
            for i, (rows, c) in enumerate(zip(table_rows, counts)):
                if c is not None and rates[i] > 0:
                    per_id = torch.full((rows,), rates[i], dtype=torch.float32)
                    n = torch.tensor(list(c), dtype=torch.float32).clamp_min(1.0)
                    per_id[FIRST:FIRST + len(n)] = rates[i] * (cfg.rare_count / n).clamp(max=1.0)
                    self.register_buffer(f"id_rates_{i}", per_id, persistent=False)
                    self.by_count[i] = True

    def _rate(self, idx: Tensor, i: int) -> Tensor:
        """Column i's drop probability for each of ``idx``'s ids (a scalar without counts)."""
        return getattr(self, f"id_rates_{i}")[idx] if self.by_count[i] else self.rates[i]

    def _drop(self, idx: Tensor, rate: Tensor) -> Tensor:
        hit = (torch.rand(idx.shape, device=idx.device) < rate) & (idx != MISSING)
        return torch.where(hit, torch.full_like(idx, OOV), idx)

    def forward(self, cat: Tensor) -> Tensor:
        """(B, C): column i dropped with rate ``rates[i]`` (per id with ``rare_count``)."""
        if not self.active:
            return cat
        if not any(self.by_count):
            return self._drop(cat, self.rates)
        rate = torch.stack([self._rate(cat[:, i], i).expand(cat.shape[0]) for i in range(cat.shape[1])], dim=1)
        return self._drop(cat, rate)

    def column(self, idx: Tensor, i: int) -> Tensor:
        """(B, L) ids of feature i (a sequence), each dropped with rate ``rates[i]`` (per id with ``rare_count``)."""
        return self._drop(idx, self._rate(idx, i)) if self.rate_list[i] > 0 else idx
