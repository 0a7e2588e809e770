"""What the GBDT leaves add to the census recipe's step, in isolation: leaf lookup + the experts' first GEMM.

    OMP_NUM_THREADS=1 python benchmarks/gbdt_leaves_block.py --rounds 3

The census recipe's first layer without data or trainer: 1,024 rows, 304 plain inputs (the d8
spec's embeddings and PLE numerics), 200 trees × 63 leaves (100 per task, 2 tasks), and the
(inputs → 8 experts × 64 + 2 gates × 8 = 528) GEMM the MMoE runs on the concatenated encoder
output. Process-CPU ms of forward + backward per step (random leaves, a fixed upstream
gradient), each variant timed in turn, ``--rounds`` times, the median printed:

- ``plain``: no leaves, the (B, 304) @ (304, 528) GEMM;
- ``concat``: the default leaves, 4 per tree (800 more inputs): gather, concatenate, one GEMM;
- ``concat_split``: the same function without the concatenation copy: two GEMMs, summed;
- ``concat_projected``: the same function through per-tree projected tables (each tree's
  (63, 4) embedding times its (4, 528) weight rows: one (12,600, 528) table) and one
  ``embedding_bag`` sum of 200 rows per row instead of the leaf GEMM (16× fewer FLOPs, but
  432 MB of row reads per step);
- ``sum16``: ``pooling: sum``, 16 per task (32 inputs);
- ``group10``: ``pooling: sum, pool_trees: 10``, 4 per tree (80 inputs).

The pooled variants run the encoder's own :class:`~recsys_mtl.nn.gbdt_leaves.GBDTLeaves`
(training mode: :func:`~recsys_mtl.nn.pooled_gather.pooled_gather`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_mtl.nn.gbdt_leaves import GBDTLeaves, GBDTLeavesConfig

B, TASKS, TREES, LEAVES, PLAIN, WIDTH = 1024, 2, 100, 63, 304, 528


def variants() -> dict[str, Callable[[], Tensor]]:
    """name → a function running one forward (returning the (B, WIDTH) first-layer output)."""
    torch.manual_seed(0)
    t = TASKS * TREES
    leaves = torch.randint(0, LEAVES, (B, t), dtype=torch.int16)
    small = torch.randn(B, PLAIN, requires_grad=True)
    bias = torch.zeros(WIDTH, requires_grad=True)

    def leaf_module(**cfg: object) -> GBDTLeaves:
        return GBDTLeaves(10, TASKS, GBDTLeavesConfig(n_trees=TREES, num_leaves=LEAVES, **cfg))  # type: ignore[arg-type]

    def first_layer(gbdt: GBDTLeaves | None) -> Callable[[], Tensor]:
        width = PLAIN + (gbdt.output_dim if gbdt is not None else 0)
        weight = (torch.randn(width, WIDTH) / width**0.5).requires_grad_(True)
        if gbdt is None:
            return lambda: torch.addmm(bias, small, weight)
        return lambda: torch.addmm(bias, torch.cat([small, gbdt.embed(leaves)], 1), weight)

    concat = leaf_module(d_embedding=4)
    weight = (torch.randn(PLAIN + concat.output_dim, WIDTH) / 1104**0.5).requires_grad_(True)

    def split() -> Tensor:
        return torch.addmm(bias, small, weight[:PLAIN]) + concat.embed(leaves) @ weight[PLAIN:]

    def projected() -> Tensor:
        d = concat.cfg.d_embedding
        table = torch.bmm(concat.embedding.weight.view(t, LEAVES, d), weight[PLAIN:].view(t, d, WIDTH)).view(t * LEAVES, WIDTH)
        return torch.addmm(bias, small, weight[:PLAIN]) + F.embedding_bag(leaves + concat.leaf_offset, table, mode="sum")

    return {
        "plain": first_layer(None),
        "concat": first_layer(concat),
        "concat_split": split,
        "concat_projected": projected,
        "sum16": first_layer(leaf_module(d_embedding=16, pooling="sum")),
        "group10": first_layer(leaf_module(d_embedding=4, pooling="sum", pool_trees=10)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    fns = variants()
    grad = torch.randn(B, WIDTH)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            fn().backward(grad)  # warm-up (allocations, first-touch)
            c0 = time.process_time()
            for _ in range(args.steps):
                fn().backward(grad)
            times[name].append((time.process_time() - c0) / args.steps * 1000)
    plain = statistics.median(times["plain"])
    for name, ms in times.items():
        med = statistics.median(ms)
        print(json.dumps({"variant": name, "cpu_ms_median": round(med, 2), "cpu_ms": [round(x, 2) for x in ms],
                          "extra_over_plain_ms": round(med - plain, 2)}))
    print(json.dumps({"threads": torch.get_num_threads(), "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
