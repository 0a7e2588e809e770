"""Forward / backward / optimizer time of one census MMoE step: ours against the naive loop's model.

    OMP_NUM_THREADS=1 python benchmarks/mmoe_step_parts.py --steps 30 --rounds 3

Same peer-sized model and batch as ``naive_loop.py`` (4 experts × [32], towers [16], plain spec,
batch 1024); the two models are stepped alternately on the same batches, each phase clocked in
process CPU time (ms per step, median over rounds), with the optimizer variants named in
``--optimizers`` (torch's AdamW: the default per-tensor loop, ``foreach`` or ``fused``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from naive_loop import PEER, NaiveMMoE
from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import build_module, prepare

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS: dict[str, dict[str, bool]] = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def clock(fn: Callable[[], object]) -> float:
    c = time.process_time()
    fn()
    return (time.process_time() - c) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--optimizers", default="loop,foreach,fused")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", [*PEER, *args.set, "runs_dir=/tmp"])
    prep = prepare(cfg, spec)
    module = build_module(prep)
    lay = prep.preprocessor.layout
    p = cfg.model.params
    naive = NaiveMMoE([lay.tables[t] for _, t in lay.categorical], prep.train.numeric.shape[1], len(spec.tasks),
                      p["num_experts"], p["expert_hidden"][0], p["tower_hidden"][0])
    cols = prep.train.columns()
    batches = [slice_batch(cols, s, s + 1024) for s in range(0, 1024 * args.steps, 1024)]
    models = {"ours": module, "naive": naive}

    def losses(name: str, batch: dict) -> torch.Tensor:
        if name == "ours":
            return module.task_losses(module.model(features_only(batch)), batch).sum()
        out = naive(batch["categorical"], batch["numeric"])
        return sum(F.binary_cross_entropy_with_logits(o, batch["labels"][:, i]) for i, o in enumerate(out))  # type: ignore[return-value]

    table: dict[tuple[str, str], list[list[float]]] = {}
    for r in range(args.rounds):
        for opt_name in args.optimizers.split(","):
            for name, model in models.items():
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, **OPTIMIZERS[opt_name])
                parts = [0.0, 0.0, 0.0]
                for batch in batches:
                    holder: dict[str, torch.Tensor] = {}
                    parts[0] += clock(lambda: holder.setdefault("loss", losses(name, batch)))
                    parts[1] += clock(lambda: holder["loss"].backward())
                    parts[2] += clock(lambda: (opt.step(), opt.zero_grad()))
                table.setdefault((name, opt_name), []).append([x / len(batches) for x in parts])
    out = []
    for (name, opt_name), runs in table.items():
        med = [statistics.median(run[i] for run in runs) for i in range(3)]
        out.append({"model": name, "optimizer": opt_name, "forward_ms": round(med[0], 2), "backward_ms": round(med[1], 2),
                    "optimizer_ms": round(med[2], 2), "step_ms": round(sum(med), 2)})
        print(json.dumps(out[-1]))
    print(json.dumps({"threads": torch.get_num_threads(), "load": os.getloadavg(),
                      "params": {k: sum(x.numel() for x in m.parameters()) for k, m in models.items()}}))


if __name__ == "__main__":
    main()
