"""Model inputs computed once per in-memory split instead of in every training step.

GBDT leaf indices (:mod:`recsys_mtl.nn.gbdt_leaves`) depend only on a row's raw columns and on
trees that are frozen before training, so walking every tree in every step (and again every
epoch) recomputes the same (N, T) integers. :func:`precomputed_columns` walks them once, in
chunks, with the model's own encoder (its ``gbdt_inputs`` and tensor walk: the very leaves the
step would compute), and the loaders carry them as the batch column
:data:`~recsys_mtl.nn.gbdt_leaves.LEAVES_KEY`. The exported graph has no such input and walks the
trees itself, so export parity is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.gbdt_leaves import LEAVES_KEY

#: rows walked at once: bounds the (chunk, T) int64 temporaries of the walk (~13 MB each at T = 200)
CHUNK_ROWS = 8192


def precomputed_columns(model: nn.Module, table: EncodedTable, chunk_rows: int = CHUNK_ROWS) -> dict[str, Tensor]:
    """Extra (N, ·) batch columns for ``table``'s rows: ``{LEAVES_KEY: (N, T) leaves}`` when the
    model has GBDT leaf inputs whose encoders all hold the same trees, else ``{}`` (the step walks).

    The leaves are computed on the trees' device and stored on the CPU next to the table, in the
    narrowest integer dtype that holds them (N · T · 2 bytes for up to 32767 leaves per tree).
    """
    encoders = [m for m in model.modules() if isinstance(m, FeatureEncoder) and m.gbdt is not None]
    if not encoders:
        return {}
    gbdt = encoders[0].gbdt
    assert gbdt is not None
    if not all(e.gbdt is not None and gbdt.same_trees(e.gbdt) for e in encoders[1:]):
        return {}  # encoders with different trees: each walks its own in the step
    device = gbdt.threshold.device
    out = torch.empty(len(table), gbdt.n_trees, dtype=gbdt.leaf_dtype())
    with torch.no_grad():
        for start in range(0, len(table), chunk_rows):
            stop = min(start + chunk_rows, len(table))
            batch = {"categorical": table.categorical[start:stop].to(device), "numeric": table.numeric[start:stop].to(device)}
            out[start:stop] = gbdt.leaves(encoders[0].gbdt_inputs(batch)).to("cpu", out.dtype)
    return {LEAVES_KEY: out}
