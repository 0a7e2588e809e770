"""Id popularity as an input: each selected id column's train count, log-scaled, as one number.

What a practitioner's LightGBM gets when high-cardinality ids enter as their training-frequency
rank: a rare or unseen id is then not an untrained (or OOV) embedding alone but also "an id seen
n times", so effects that follow popularity carry over to the tail and to new ids. The count is
looked up from the fitted vocabulary (``preprocessing.json``'s ``counts``), a constant (rows,)
table inside the model, so the ONNX graph computes it with one Gather.

Per column: ``log1p(n_id) / log1p(max_n)`` in [0, 1]; MISSING and OOV (never seen) are 0.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.features.fitted import FIRST
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.errors import SpecError
from recsys_mtl.strict import ParamsModel


class IdCountsConfig(ParamsModel):
    """``encoder.id_counts: {features: null, min_vocab: 100}``."""

    features: list[str] | None = None
    """categorical features whose log train count is an input (null: every one with counts whose table has ≥ min_vocab rows)"""
    min_vocab: int = Field(100, ge=1)
    """with `features: null`, tables of at least this many rows give their counts"""


class IdCountInputs(nn.Module):
    """(B, C) categorical ids → (B, K) scaled log train counts of the K selected columns."""

    def __init__(self, layout: Layout, cfg: IdCountsConfig):
        super().__init__()
        names = [f for f, _ in layout.categorical]
        counted = {f for f, t in layout.categorical if t in layout.table_counts}
        if cfg.features is not None:
            bad = [f for f in cfg.features if f not in counted]
            if bad and layout.table_counts:
                raise SpecError(f"encoder.id_counts.features: {bad} are not categorical features with a fitted vocabulary "
                                f"(those are {sorted(counted)})")
            chosen = [f for f in cfg.features if f in counted]
        else:
            chosen = [f for f, t in layout.categorical if f in counted and layout.tables[t][0] >= cfg.min_vocab]
        self.features = chosen
        self.columns = [names.index(f) for f in chosen]
        tables = dict(layout.categorical)
        for i, f in enumerate(chosen):
            counts = layout.table_counts[tables[f]]
            scale = math.log1p(max(counts))
            value = torch.zeros(layout.tables[tables[f]][0])
            value[FIRST:FIRST + len(counts)] = torch.log1p(torch.tensor(counts, dtype=torch.float32)) / scale
            self.register_buffer(f"value_{i}", value, persistent=False)  # rebuilt from preprocessing.json

    @property
    def width(self) -> int:
        return len(self.columns)

    def forward(self, cat: Tensor) -> Tensor:
        return torch.stack([getattr(self, f"value_{i}")[cat[:, c]] for i, c in enumerate(self.columns)], dim=-1)
