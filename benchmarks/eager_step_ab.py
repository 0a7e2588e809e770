"""The eager training step's op-level changes, each against the code before it, in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python eager_step_ab.py --model mmoe_plain --rounds 5
    cd benchmarks && OMP_NUM_THREADS=1 python eager_step_ab.py --model mmoe_plain --set model.params.num_experts=4 \
        model.params.expert_hidden=[32] model.params.tower_hidden=[16]     # the naive loop's peer-sized MMoE

Variants (``--variants``), each a copy of the same initial model stepped on the same census batches
with the training optimizer (:func:`recsys_mtl.train.optim.build_optimizer`: fused AdamW):

- ``before``: the step as it was before these changes (the old code is kept below and patched in);
- ``split``, ``lookup``, ``mix``: ``before`` with only that change;
- ``after``: the package as it is.

The changes: ``split``: the experts' fused first GEMM cut by one ``split`` instead of two slices;
``lookup``: categorical embeddings read with ``index_select`` instead of ``embedding``
(:func:`recsys_mtl.nn.encoders.lookup`); ``mix``: the MMoE gates' mixtures as one bmm
(:func:`recsys_mtl.nn.blocks.mix_each`, which keeps the broadcast multiply + sum per gate below
``BMM_MIX_MIN_WORK``; ``--bmm-min-work 0`` forces the bmm at every size, to find that threshold).
Variants take turns, one block of ``--steps`` steps each per
round; prints process-CPU ms per step (forward + loss, backward, optimizer) as the median over
rounds, and each variant's step / the first variant's step, median of the per-round ratios.
Writes the rows as JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from census_models import model_source
from code_patches import applied
from mmoe_step_parts import clock
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.models import moe
from recsys_mtl.nn import blocks, encoders
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.optim import build_optimizer


def old_experts_forward(self: blocks.ParallelExperts, x: Tensor, side: Sequence[nn.Linear] = (), side_out: list[Tensor] | None = None) -> Tensor:
    """ParallelExperts.forward before ``split``: two slices of the fused GEMM's output."""
    w0, b0 = self.weights[0], self.biases[0]
    d_in, width = w0.shape[1], self.num_experts * w0.shape[2]
    weight = w0.permute(1, 0, 2).reshape(d_in, width)
    bias = b0.reshape(width)
    if side:
        weight = torch.cat([weight, *(lin.weight.t() for lin in side)], dim=1)
        bias = torch.cat([bias, *(lin.bias for lin in side)])
    out = torch.addmm(bias, x, weight)
    h = out[:, :width].reshape(x.shape[0], self.num_experts, -1)
    if side:
        assert side_out is not None
        side_out += out[:, width:].split([lin.out_features for lin in side], dim=1)
    h = self.dropout(self.act(h))
    for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
        h = self.dropout(self.act(torch.einsum("bei,eio->beo", h, w) + b))
    self.last_output = h.detach()
    return h


def old_mix_each(experts: Tensor, weights: Sequence[Tensor]) -> list[Tensor]:
    """Before ``mix``: a broadcast multiply + sum per gate."""
    return [blocks.mix(experts, w) for w in weights]


def old_lookup(table: nn.Embedding, ids: Tensor) -> Tensor:
    return table(ids)


def old_categorical_block(self: encoders.FeatureEncoder, cat: Tensor) -> Tensor:
    """Before ``lookup``: ``embedding`` on the concatenated tables."""
    if not self.fused:
        return torch.cat([self.embeddings[t](cat[:, i]) for i, t in enumerate(self.cat_tables)], dim=-1)
    weight = torch.cat([self.embeddings[t].weight for t in self.cat_tables])
    return F.embedding(cat + self.cat_offsets, weight).flatten(1)


#: patch → (object, attribute, value) it sets
PATCHES: dict[str, list[tuple[object, str, object]]] = {
    "old_split": [(blocks.ParallelExperts, "forward", old_experts_forward)],
    "old_lookup": [(encoders.FeatureEncoder, "categorical_block", old_categorical_block), (encoders, "lookup", old_lookup)],
    "old_mix": [(moe, "mix_each", old_mix_each)],
}
#: variant → the patches it runs under
VARIANTS: dict[str, list[str]] = {
    "before": ["old_split", "old_lookup", "old_mix"], "split": ["old_lookup", "old_mix"],
    "lookup": ["old_split", "old_mix"], "mix": ["old_split", "old_lookup"], "after": [],
}


def code_of(variant: str) -> contextlib.AbstractContextManager[None]:
    """The package's code with ``variant``'s patches applied, restored on exit."""
    return applied(p for name in VARIANTS[variant] for p in PATCHES[name])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mmoe_plain")
    ap.add_argument("--set", nargs="*", default=[], help="pipeline overrides")
    ap.add_argument("--variants", default="before,split,lookup,mix,after")
    ap.add_argument("--bmm-min-work", type=int, default=blocks.BMM_MIX_MIN_WORK, help="mix_each's T·E·H threshold for the bmm")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    blocks.BMM_MIX_MIN_WORK = args.bmm_min_work

    pipeline, overrides = model_source(args.model)
    cfg, spec = load_pipeline(pipeline, [*overrides, *args.set])
    train = load_splits(cfg.data).train
    pre = Preprocessor.fit(spec, train)
    cols = pre.transform(train.head(args.batch_size * 8)).columns()
    batches = [{k: v[i * args.batch_size:(i + 1) * args.batch_size] for k, v in cols.items()} for i in range(8)]
    torch.manual_seed(0)
    model = build_model(cfg.model.name, cfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks)).train()
    variants = args.variants.split(",")
    runs = {v: copy.deepcopy(model) for v in variants}
    opts = {v: build_optimizer(m, nn.Module(), cfg.trainer) for v, m in runs.items()}

    def block(v: str) -> list[float]:
        m, opt = runs[v], opts[v]
        parts = [0.0, 0.0, 0.0]
        with code_of(v):
            for s in range(args.steps):
                b = batches[s % len(batches)]
                held: dict[str, Tensor] = {}

                def forward() -> None:
                    out = m(features_only(b))
                    held["loss"] = sum(F.binary_cross_entropy_with_logits(out[t.name], b["labels"][:, i]) for i, t in enumerate(spec.tasks))  # type: ignore[assignment]

                parts[0] += clock(forward)
                parts[1] += clock(lambda: held["loss"].backward())
                parts[2] += clock(lambda: (opt.step(), opt.zero_grad()))
        return [x / args.steps for x in parts]

    for v in variants:
        block(v)  # warm-up
    table: dict[str, list[list[float]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            table[v].append(block(v))
    load = os.getloadavg()
    rows = []
    for v in variants:
        med = [statistics.median(r[i] for r in table[v]) for i in range(3)]
        ratio = statistics.median(sum(a) / sum(b) for a, b in zip(table[v], table[variants[0]]))
        rows.append({"variant": v, "forward_ms": round(med[0], 2), "backward_ms": round(med[1], 2), "optimizer_ms": round(med[2], 2),
                     "step_ms": round(sum(med), 2), f"step_vs_{variants[0]}": round(ratio, 3)})
        print(json.dumps(rows[-1]))
    meta = {"model": args.model, "set": args.set, "threads": torch.get_num_threads(), "load": load, "rounds": args.rounds, "steps": args.steps}
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
