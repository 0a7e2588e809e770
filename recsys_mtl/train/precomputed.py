"""Model inputs computed once per in-memory split instead of in every training step.

GBDT leaf indices (:mod:`recsys_mtl.nn.gbdt_leaves`) depend only on a row's raw columns and on
trees that are frozen before training, so walking every tree in every step (and again every
epoch) recomputes the same (N, T) integers. :func:`precomputed_columns` walks them once, in
chunks, with the model's own encoder (its ``gbdt_inputs`` and tensor walk: the very leaves the
step would compute), and the loaders carry them as the batch column
:data:`~recsys_mtl.nn.gbdt_leaves.LEAVES_KEY`. The exported graph has no such input and walks the
trees itself, so export parity is unchanged. With ``margin: true`` the trees' (N, tasks) scores are
carried too (:data:`~recsys_mtl.nn.gbdt_leaves.MARGINS_KEY`), summed by the model's own
:meth:`~recsys_mtl.nn.gbdt_leaves.GBDTLeaves.margins`; ``pooling: none`` needs no leaves in the
step, so only the scores are carried.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.gbdt_leaves import LEAVES_KEY, MARGINS_KEY

#: rows walked at once: bounds the (chunk, T) int64 temporaries of the walk (~13 MB each at T = 200)
CHUNK_ROWS = 8192


def precomputed_columns(model: nn.Module, table: EncodedTable, chunk_rows: int = CHUNK_ROWS) -> dict[str, Tensor]:
    """Extra (N, ·) batch columns for ``table``'s rows when the model has GBDT trees whose encoders
    all hold the same trees: ``LEAVES_KEY``: (N, T) leaves (when the leaves are inputs) and, with
    ``margin``, ``MARGINS_KEY``: (N, tasks) float32 tree scores; else ``{}`` (the step walks).

    The leaves are computed on the trees' device and stored on the CPU next to the table, in the
    narrowest integer dtype that holds them (N · T · 2 bytes for up to 32767 leaves per tree).
    """
    encoders = [m for m in model.modules() if isinstance(m, FeatureEncoder) and m.gbdt is not None]
    if not encoders:
        return {}
    gbdt = encoders[0].gbdt
    assert gbdt is not None
    if not all(e.gbdt is not None and gbdt.same_trees(e.gbdt) and e.gbdt.cfg.margin == gbdt.cfg.margin for e in encoders[1:]):
        return {}  # encoders with different trees: each walks its own in the step
    device = gbdt.threshold.device
    out: dict[str, Tensor] = {}
    if gbdt.cfg.leaf_inputs():
        out[LEAVES_KEY] = torch.empty(len(table), gbdt.n_trees, dtype=gbdt.leaf_dtype())
    if gbdt.cfg.margin:
        out[MARGINS_KEY] = torch.empty(len(table), gbdt.n_tasks, dtype=gbdt.leaf_value.dtype)
    with torch.no_grad():
        for start in range(0, len(table), chunk_rows):
            stop = min(start + chunk_rows, len(table))
            batch = {"categorical": table.categorical[start:stop].to(device), "numeric": table.numeric[start:stop].to(device)}
            leaves = gbdt.leaves(encoders[0].gbdt_inputs(batch))
            if LEAVES_KEY in out:
                out[LEAVES_KEY][start:stop] = leaves.to("cpu", out[LEAVES_KEY].dtype)
            if MARGINS_KEY in out:
                out[MARGINS_KEY][start:stop] = gbdt.margins(leaves).to("cpu")
    return out
