"""Ours against a framework-free loop of the same model, in one process, alternating.

    python benchmarks/naive_loop.py --rounds 3 --epochs 1

The peer-sized census MMoE of the performance table: plain spec (``census_income.yaml``: one
embedding per categorical column, numerics as 1-d inputs), 4 experts × [32], towers [16], Adam
at a constant lr, batch 1024. Three ways to train it, each clocked over the training batches
only (validation and start-up excluded), alternated in every round so all see the same load:

- ``lightning``: this package's fit (``make_trainer`` + :class:`TableDataModule`), as a user runs it;
- ``raw``: this package's model and loss in a plain PyTorch loop (what Lightning adds is the gap);
- ``naive``: the same architecture written the obvious way: tensors in memory, batches sliced,
  one ``nn.Embedding`` per table, one ``nn.Linear`` per expert and gate, a tower per task,
  ``torch.optim.Adam``.

Prints rows/s per run, then ours / naive (mean over rounds).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsys_mtl.data.tensors import EncodedTable, features_only, slice_batch
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.fit import build_module, make_trainer, prepare
from recsys_mtl.train.module import MultiTaskModule
from train_clock import TrainClock

ROOT = Path(__file__).resolve().parents[1]
PEER = [
    "spec=../feature_specs/census_income.yaml", "model.params.num_experts=4", "model.params.expert_hidden=[32]",
    "model.params.tower_hidden=[16]", "encoder.numeric_embedding=null", "encoder.gbdt_leaves=null",
    "trainer.lr_schedule=constant", "trainer.warmup_fraction=0", "trainer.progress_bar=false", "trainer.patience=100",
]


class NaiveMMoE(nn.Module):
    """(B, C) ids, (B, M) numerics → per-task (B,) logits; every block its own module."""

    def __init__(self, tables: list[tuple[int, int]], n_numeric: int, n_tasks: int, n_experts: int, expert: int, tower: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n, d in tables)
        d_in = sum(d for _, d in tables) + n_numeric
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d_in, expert), nn.ReLU()) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(d_in, n_experts) for _ in range(n_tasks))
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(expert, tower), nn.ReLU(), nn.Linear(tower, 1)) for _ in range(n_tasks))

    def forward(self, cat: Tensor, num: Tensor) -> list[Tensor]:
        x = torch.cat([emb(cat[:, i]) for i, emb in enumerate(self.embeddings)] + [num], dim=1)
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, H)
        out = []
        for gate, tower in zip(self.gates, self.towers):
            w = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # (B, E, 1)
            out.append(tower((experts * w).sum(1)).squeeze(-1))
        return out


def naive_epochs(model: NaiveMMoE, table: EncodedTable, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[float, float, int]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    wall = cpu = 0.0
    rows = 0
    for _ in range(epochs):
        w0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(len(table), generator=g)
        cat, num, y = table.categorical[order], table.numeric[order], table.labels[order]
        for s in range(0, len(table), batch_size):
            logits = model(cat[s:s + batch_size], num[s:s + batch_size])
            yb = y[s:s + batch_size]
            loss = sum(F.binary_cross_entropy_with_logits(lg, yb[:, i]) for i, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            rows += yb.shape[0]
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return rows / wall, rows / cpu, rows


def raw_epochs(module: MultiTaskModule, table: EncodedTable, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[float, float, int]:
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    g = torch.Generator().manual_seed(seed)
    wall = cpu = 0.0
    rows = 0
    for _ in range(epochs):
        w0, c0 = time.perf_counter(), time.process_time()
        cols = table.permuted(torch.randperm(len(table), generator=g)).columns()
        for s in range(0, len(table), batch_size):
            batch = slice_batch(cols, s, min(s + batch_size, len(table)))
            loss = module.task_losses(module.model(features_only(batch)), batch).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rows += batch["labels"].shape[0]
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return rows / wall, rows / cpu, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "census_mmoe.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--set", action="append", default=[], help="extra pipeline overrides (our side)")
    ap.add_argument("--variants", default="lightning,raw,naive")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(args.pipeline, [*PEER, *args.set, f"runs_dir={tmp}", f"trainer.max_epochs={args.epochs}"])
        t = cfg.trainer
        prep = prepare(cfg, spec)
        module = build_module(prep)
        lay = prep.preprocessor.layout
        tables = [lay.tables[tb] for _, tb in lay.categorical]
        p = cfg.model.params
        naive = NaiveMMoE(tables, prep.train.numeric.shape[1], len(spec.tasks), p["num_experts"], p["expert_hidden"][0], p["tower_hidden"][0])
        print(json.dumps({"rows": len(prep.train), "threads": torch.get_num_threads(), "batch_size": t.batch_size,
                          "params_ours": sum(x.numel() for x in module.model.parameters()),
                          "params_naive": sum(x.numel() for x in naive.parameters()), "load": os.getloadavg()}), flush=True)
        results: dict[str, list[float]] = {v: [] for v in variants}
        # copies made before any training: a trained module holds non-leaf tensors deepcopy refuses
        ours = [copy.deepcopy(module) for _ in range(args.rounds * 2)]
        theirs = [copy.deepcopy(naive) for _ in range(args.rounds)]
        for r in range(args.rounds):
            for v in variants:
                if v == "lightning":
                    clock = TrainClock()
                    trainer, _, _ = make_trainer(cfg, Path(tmp) / f"run{r}", [clock])
                    dm = TableDataModule(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed)
                    trainer.fit(ours[2 * r], datamodule=dm)
                    wall, cpu = clock.rows_per_sec()
                elif v == "raw":
                    wall, cpu, _ = raw_epochs(ours[2 * r + 1], prep.train, args.epochs, t.batch_size, t.lr, t.seed)
                else:
                    wall, cpu, _ = naive_epochs(theirs[r], prep.train, args.epochs, t.batch_size, t.lr, t.seed)
                results[v].append(cpu)
                print(json.dumps({"round": r, "variant": v, "rows_per_sec_wall": round(wall), "rows_per_cpu_sec": round(cpu),
                                  "load": os.getloadavg()}), flush=True)
    if "naive" in results:
        ratios = {v: round(sum(a / b for a, b in zip(results[v], results["naive"])) / args.rounds, 3) for v in variants if v != "naive"}
        print(json.dumps({"ratio_to_naive_cpu": ratios}, indent=1))


if __name__ == "__main__":
    main()
