"""The wide part: one learned scalar per id and per task, added to the task's logit.

Wide & Deep's (Cheng et al., DLRS 2016) wide linear model restricted to its first-order id terms,
i.e. the per-feature biases of a factorisation machine (Rendle, ICDM 2010): for each selected
categorical column c and each task t, ``logit_t += Σ_c w^c_t[id_c]``. A frequent id gets its own
offset directly instead of through the deep part's embedding and layers; rare ids are shrunk
towards 0 by the rarity-aware L2 of :mod:`recsys_mtl.nn.id_regularization` (``λ / n_j`` on the
rows of the batch, DIN's mini-batch aware form), and the MISSING and OOV rows are fixed at 0, so
an id unseen in training adds nothing. Exported as a Gather and a sum in the model's ONNX graph.

Deviations: no cross-product terms (the cross network and the deep part cover those); trained
by the model's optimizer (the paper's FTRL with L1 for the wide part is not used); weights start at 0.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.features.fitted import FIRST
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.nn.id_regularization import batch_rows, frequency_l2, inverse_counts
from recsys_mtl.nn.named import NamedModuleDict
from recsys_mtl.strict import ParamsModel


class WideConfig(ParamsModel):
    """``encoder.wide: {features: null, min_vocab: 100, l2: 1.0e-3, power: 1.0}``."""

    features: list[str] | None = None
    """categorical features with a scalar per id (null: every one whose table has ≥ min_vocab rows)"""
    min_vocab: int = Field(100, ge=1)
    """with `features: null`, tables of at least this many rows get a wide part"""
    l2: float = Field(1e-3, ge=0.0)
    """rarity-scaled shrinkage: Σ over the batch's distinct ids j of l2 · Σ_t w_jt² / n_j^power"""
    power: float = Field(1.0, ge=0.0)
    """rarity exponent of the shrinkage: rarer ids are shrunk more"""


class WideLogits(nn.Module):
    """(B, C) categorical ids → (B, T) per-task sums of the selected columns' id scalars."""

    def __init__(self, layout: Layout, n_tasks: int, cfg: WideConfig):
        super().__init__()
        names = [f for f, _ in layout.categorical]
        if cfg.features is not None:
            unknown = [f for f in cfg.features if f not in names]
            if unknown:
                raise SpecError(f"encoder.wide.features: {unknown} are not categorical features of the spec ({names})")
            chosen = list(cfg.features)
        else:
            chosen = [f for f, t in layout.categorical if layout.tables[t][0] >= cfg.min_vocab]
        # a layout without fitted vocabularies (the shape-only check of `validate`, whose tables
        # are 2-bucket hashes) cannot size the tables: no column then, not an error
        if not chosen and layout.table_counts:
            raise SpecError(f"encoder.wide: no categorical feature has a table of ≥ {cfg.min_vocab} rows; "
                            "name them in encoder.wide.features or lower min_vocab")
        self.cfg = cfg
        self.n_tasks = n_tasks
        self.columns = [names.index(f) for f in chosen]
        self.features = chosen
        tables = dict(layout.categorical)
        self.scalars = NamedModuleDict({f: nn.Embedding(layout.tables[tables[f]][0], n_tasks) for f in chosen})
        for emb in self.scalars.values():
            nn.init.zeros_(emb.weight)
        for i, f in enumerate(chosen):
            rows = layout.tables[tables[f]][0]
            # (rows,) 1 / n^power per vocabulary row (0 at MISSING / OOV and without counts)
            self.register_buffer(f"inv_{i}", inverse_counts(layout.table_counts.get(tables[f]), rows, cfg.power), persistent=False)

    def forward(self, cat: Tensor) -> Tensor:
        """(B, C) int64 → (B, T) float; MISSING and OOV ids contribute 0 (and get no gradient)."""
        out = torch.zeros(cat.shape[0], self.n_tasks, device=cat.device)
        for f, col in zip(self.features, self.columns):
            idx = cat[:, col]
            known = (idx >= FIRST).unsqueeze(-1).to(torch.float32)
            out = out + self.scalars[f](idx) * known
        return out

    def penalty(self, batch: Batch) -> Tensor:
        """Scalar rarity-scaled L2 of the scalars the batch's ids use."""
        total = torch.zeros((), device=batch["categorical"].device)
        if self.cfg.l2 == 0.0:
            return total
        for i, (f, col) in enumerate(zip(self.features, self.columns)):
            rows = batch_rows([batch["categorical"][:, col]])
            total = total + frequency_l2(self.scalars[f], rows, getattr(self, f"inv_{i}"))  # type: ignore[arg-type]
        return self.cfg.l2 * total
