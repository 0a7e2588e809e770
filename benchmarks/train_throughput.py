"""Training throughput on a pipeline's data: loader alone, a raw PyTorch loop, and the Lightning fit.

    python benchmarks/train_throughput.py pipelines/census_mmoe.yaml --epochs 2

Prints rows/s for each layer so the cost of every layer above the data is visible, and the
process's peak RSS. Uses the pipeline's model, batch size and learning rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import features_only
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.callbacks import peak_rss_mib
from recsys_mtl.train.fit import build_module, fit, prepare


def loader_rows_per_sec(loader: ColumnBatchLoader, epochs: int) -> float:
    rows, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            rows += batch["labels"].shape[0]
    return rows / (time.perf_counter() - t0)


def raw_loop_rows_per_sec(module: torch.nn.Module, loader: ColumnBatchLoader, epochs: int, lr: float) -> float:
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    rows, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            losses = module.task_losses(module.model(features_only(batch)), batch)
            loss = losses.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rows += batch["labels"].shape[0]
    return rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pipeline")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg, spec = load_pipeline(args.pipeline, args.set)
    t0 = time.perf_counter()
    prep = prepare(cfg, spec)
    prep_s = time.perf_counter() - t0
    bs = cfg.trainer.batch_size
    loader = ColumnBatchLoader(prep.train, bs, shuffle=True, seed=0)
    module = build_module(prep)
    result = {
        "pipeline": cfg.name,
        "model": cfg.model.name,
        "rows": len(prep.train),
        "batch_size": bs,
        "torch_threads": torch.get_num_threads(),
        "read_fit_transform_seconds": round(prep_s, 2),
        "loader_rows_per_sec": round(loader_rows_per_sec(loader, args.epochs)),
        "raw_torch_loop_rows_per_sec": round(raw_loop_rows_per_sec(module, loader, args.epochs, cfg.trainer.lr)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        over = [*args.set, f"trainer.max_epochs={args.epochs}", "trainer.progress_bar=false", f"runs_dir={tmp}", "trainer.patience=100"]
        cfg2, spec2 = load_pipeline(args.pipeline, over)
        m = fit(cfg2, spec2).metrics
    result["lightning_fit_rows_per_sec"] = m["train_rows_per_sec"]
    result["test_auc"] = {k: v for k, v in m["test"].items() if k.endswith("/auc")}
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
