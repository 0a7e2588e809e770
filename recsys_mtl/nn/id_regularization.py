"""Rarity-aware regularisation of id embeddings: mini-batch aware L2 and max-norm.

Mini-batch aware regularisation follows DIN (Zhou et al., "Deep Interest Network for
Click-Through Rate Prediction", KDD 2018, §5.1, eq. 9): on each training batch, only the
embedding rows the batch uses are penalised, each by ``λ · ||w_j||² / n_j`` with ``n_j`` the
number of training rows holding id ``j``. An id appears in about ``n_j`` batches of an epoch, so
over an epoch every row gets about one full L2 step, while per occurrence a rare id is shrunk
``n_frequent / n_rare`` times harder than a frequent one: its few rows cannot pull it far from 0.

Deviations from the paper, listed: ``power`` generalises ``1 / n_j`` to ``1 / n_j^power``
(1 = the paper); the MISSING and OOV rows and tables without train counts (hashed tables,
quantile-bucketed numerics, preprocessing fitted before counts were stored) are not penalised,
since their count is unknown; ``max_norm`` (not in DIN) renormalises the rows a batch used to at
most that L2 norm after each optimizer step, as ``nn.Embedding(max_norm=...)`` would at lookup.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.features.fitted import FIRST
from recsys_mtl.strict import ParamsModel


class IdRegularizationConfig(ParamsModel):
    """``encoder.id_regularization: {l2: 1.0e-4, power: 1.0, max_norm: null, features: null}``."""

    l2: float = Field(0.0, ge=0.0)
    """λ of the mini-batch aware L2: Σ over the batch's distinct rows j of λ · ||w_j||² / n_j^power"""
    power: float = Field(1.0, ge=0.0)
    """exponent of the train count (1: DIN; 0: plain L2 on the rows in the batch)"""
    max_norm: float | None = Field(None, gt=0.0)
    """after each optimizer step, rows the batch used are scaled down to this L2 norm (null: off)"""
    features: list[str] | None = None
    """categorical / sequence features whose ids are regularised (null: every one with train counts)"""


def inverse_counts(counts: Sequence[int] | None, rows: int, power: float) -> Tensor:
    """(rows,) float: ``1 / n_j^power`` at each vocabulary row ``FIRST + i``; 0 at MISSING / OOV
    and everywhere when ``counts`` is None (nothing known, nothing penalised)."""
    out = torch.zeros(rows, dtype=torch.float32)
    if counts is not None:
        n = torch.tensor(list(counts), dtype=torch.float32).clamp_min(1.0)
        out[FIRST:FIRST + len(n)] = n.pow(-power)
    return out


def batch_rows(ids: Sequence[Tensor]) -> Tensor:
    """Distinct ids of any shape, flattened together → (R,) sorted unique int64 rows."""
    return torch.unique(torch.cat([i.reshape(-1) for i in ids]))


def frequency_l2(table: nn.Embedding, rows: Tensor, inv_count: Tensor) -> Tensor:
    """Scalar ``Σ_j ||w_j||² · inv_count[j]`` over (R,) distinct ``rows``.

    Looked up with the table's own sparsity so a row-sparse table keeps sparse gradients; the
    gradient is ``2 · inv_count[j] · w_j`` on exactly these rows and zero elsewhere.
    """
    w = nn.functional.embedding(rows, table.weight, sparse=table.sparse)  # (R, d)
    return (w.pow(2).sum(-1) * inv_count[rows]).sum()


@torch.no_grad()
def renorm_rows(table: nn.Embedding, rows: Tensor, max_norm: float) -> None:
    """Scale the (R,) ``rows`` of ``table`` whose L2 norm exceeds ``max_norm`` down to it (in place)."""
    w = table.weight[rows]
    norm = w.norm(dim=-1, keepdim=True)
    table.weight[rows] = w * (max_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
