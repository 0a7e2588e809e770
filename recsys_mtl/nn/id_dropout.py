"""Id dropout: train the out-of-vocabulary row by mapping a share of training ids to it.

A vocabulary fitted on train holds every train value, so without this no training row ever
indexes the OOV row and every id unseen at serving time gets the row's random initial vector.
With a rate ``p`` per feature, each non-missing id of a training batch is replaced by the OOV
index with probability ``p`` (missing stays missing); the OOV row then learns the average
unknown id, and the model learns to rely on the other features for it. Evaluation and serving
are unchanged. On by default for high-cardinality tables (≥ ``min_vocab`` rows), where unseen
ids are common; off for small closed sets.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from recsys_mtl.data.fitted import MISSING, OOV


class IdDropoutConfig(BaseModel):
    """A model param: ``id_dropout: {rate: 0.05, min_vocab: 1000, features: {user_id: 0.1}}``."""

    model_config = ConfigDict(extra="forbid")

    #: share of a feature's training ids replaced by the OOV index
    rate: float = Field(0.05, ge=0.0, lt=1.0)
    #: the default rate applies to features whose table has at least this many rows
    min_vocab: int = Field(1000, ge=1)
    #: per-feature rates (any table size); 0 switches a feature off
    features: dict[str, float] = {}

    def rate_for(self, feature: str, table_rows: int) -> float:
        if feature in self.features:
            return self.features[feature]
        return self.rate if table_rows >= self.min_vocab else 0.0


class IdDropout(nn.Module):
    """(B, C) or (B, L) int64 indices → the same shape with dropped ids set to OOV (training only)."""

    def __init__(self, table_rows: Sequence[int], features: Sequence[str], cfg: IdDropoutConfig):
        super().__init__()
        bad = {f: r for f, r in cfg.features.items() if not 0.0 <= r < 1.0}
        if bad:
            raise ValueError(f"id_dropout.features: rates must be in [0, 1), got {bad}")
        rates = [cfg.rate_for(f, n) for f, n in zip(features, table_rows)]
        self.rate_list = rates
        self.active = any(r > 0 for r in rates)
        self.register_buffer("rates", torch.tensor(rates, dtype=torch.float32), persistent=False)

    def _drop(self, idx: Tensor, rate: Tensor) -> Tensor:
        hit = (torch.rand(idx.shape, device=idx.device) < rate) & (idx != MISSING)
        return torch.where(hit, torch.full_like(idx, OOV), idx)

    def forward(self, cat: Tensor) -> Tensor:
        """(B, C): column i dropped with rate ``rates[i]``."""
        return self._drop(cat, self.rates) if self.active else cat

    def column(self, idx: Tensor, i: int) -> Tensor:
        """(B, L) ids of feature i (a sequence), each dropped with rate ``rates[i]``."""
        return self._drop(idx, self.rates[i]) if self.rate_list[i] > 0 else idx
