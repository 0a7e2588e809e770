"""What GBDT leaf inputs cost the training step: census MMoE with and without them, one process.

    python benchmarks/gbdt_leaves_cost.py --rounds 2 --batches 60

The census recipe (``pipelines/census_mmoe.yaml``: 100 trees × 2 tasks, 63 leaves, depth 10) is
prepared once and its trees fitted once; then, alternating in every round so all variants see
the same machine load, one Lightning epoch of ``--batches`` batches is clocked for

- ``plain``: the same model without ``gbdt_leaves``;
- ``walk``: leaves from walking every tree in every step (the loaders carry no leaves: the
  behaviour before leaves were precomputed);
- ``precomputed``: leaves computed once per split before training (the default now);
- ``sum``: precomputed, with ``pooling: sum`` and ``--sum-dim`` dims: each task's leaf
  embeddings summed (tasks × d inputs instead of trees × d), on the same fitted trees;
- ``group``: precomputed, ``pooling: sum`` with ``pool_trees: --group-trees`` and the recipe's
  ``d_embedding``: each run of that many consecutive trees summed (trees / p × d inputs);
- ``margin``: ``--margin-pipeline`` (``pipelines/census_mmoe_gbdt_margin.yaml``: early-stopped
  trees ≤ 600 per task, 2-dim leaves concatenated, the trees' score in the logit), its trees fitted
  once (the practitioner's LightGBM settings, early stopping on validation);
- ``margin_only``: the same pipeline and trees with ``pooling: none``: no leaf inputs, the loader
  carries the trees' precomputed (N, tasks) score, the network is ``plain``'s.

``plain`` is the same MMoE without trees for both pipelines (they differ only in ``gbdt_leaves``).

Prints rows/s (wall and CPU) per run, then the ratios to ``plain`` (mean over rounds), and the
one-off seconds to precompute the train split's leaves.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from recsys_mtl.balancing import build_balancer
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.fit import Prepared, build_module, make_trainer, prepare
from recsys_mtl.train.module import MultiTaskModule
from recsys_mtl.train.precomputed import precomputed_columns
from train_clock import TrainClock

ROOT = Path(__file__).resolve().parents[1]


class WalkingDataModule(TableDataModule):
    """The loaders carry no precomputed columns: every step walks the trees."""

    def _precomputed(self, table: EncodedTable) -> dict[str, Tensor]:
        return {}


def same_trees_module(prep: Prepared, fitted: MultiTaskModule) -> MultiTaskModule:
    """``prep``'s module with ``fitted``'s trees (and leaf values, kept counts) copied in (no second LightGBM fit)."""
    cfg = prep.cfg
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model.name, cfg.model.params, model_context(prep.preprocessor.layout, prep.spec.tasks, cfg.encoder))
    trees = {k: v for k, v in fitted.model.encoder.gbdt.state_dict().items() if not k.startswith("embedding.")}
    wanted = set(model.encoder.gbdt.state_dict())
    model.encoder.gbdt.load_state_dict({k: v for k, v in trees.items() if k in wanted}, strict=False)
    balancer = build_balancer(cfg.balancing.name, cfg.balancing.params, model.task_names)
    return MultiTaskModule(model, prep.spec.tasks, balancer, cfg.trainer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "census_mmoe.yaml")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", type=int, default=60, help="training batches clocked per run")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--variants", nargs="+", default=["plain", "walk", "precomputed", "sum", "group"], help="plain is always run")
    ap.add_argument("--sum-dim", type=int, default=16, help="d_embedding of the sum-pooled variant")
    ap.add_argument("--group-trees", type=int, default=10, help="pool_trees of the group variant")
    ap.add_argument("--margin-pipeline", type=Path, default=ROOT / "pipelines" / "census_mmoe_gbdt_margin.yaml",
                    help="pipeline of the margin and margin_only variants (same data and network as --pipeline)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        over = [*args.set, f"runs_dir={tmp}", "trainer.progress_bar=false", "trainer.max_epochs=1",
                f"trainer.limit_train_batches={args.batches}"]
        cfg, spec = load_pipeline(args.pipeline, over)
        plain_cfg, _ = load_pipeline(args.pipeline, [*over, "encoder.gbdt_leaves=null"])
        t0 = time.perf_counter()
        prep = prepare(cfg, spec)
        prep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gbdt = build_module(prep)
        trees_s = time.perf_counter() - t0
        plain = build_module(replace(prep, cfg=plain_cfg))
        t0, c0 = time.perf_counter(), time.process_time()
        leaves = precomputed_columns(gbdt.model, prep.train)
        leaves_s, leaves_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"rows": len(prep.train), "threads": torch.get_num_threads(), "prepare_s": round(prep_s, 1),
                          "fit_trees_s": round(trees_s, 1), "precompute_train_leaves_s": round(leaves_s, 2),
                          "precompute_train_leaves_cpu_s": round(leaves_cpu, 2),
                          "leaves_shape": list(next(iter(leaves.values())).shape), "load": os.getloadavg()}), flush=True)
        sum_cfg, _ = load_pipeline(args.pipeline, [*over, "encoder.gbdt_leaves.pooling=sum", f"encoder.gbdt_leaves.d_embedding={args.sum_dim}"])
        summed = same_trees_module(replace(prep, cfg=sum_cfg), gbdt)
        group_cfg, _ = load_pipeline(args.pipeline, [*over, "encoder.gbdt_leaves.pooling=sum", f"encoder.gbdt_leaves.pool_trees={args.group_trees}"])
        grouped = same_trees_module(replace(prep, cfg=group_cfg), gbdt)
        variants = {"plain": (plain, TableDataModule), "walk": (gbdt, WalkingDataModule), "precomputed": (gbdt, TableDataModule),
                    "sum": (summed, TableDataModule), "group": (grouped, TableDataModule)}
        if {"margin", "margin_only"} & set(args.variants):
            only_cfg, _ = load_pipeline(args.margin_pipeline, [*over, "encoder.gbdt_leaves.pooling=none"])
            t0, c0 = time.perf_counter(), time.process_time()
            only = build_module(replace(prep, cfg=only_cfg))  # fits the margin pipeline's trees (early-stopped)
            columns = precomputed_columns(only.model, prep.train)
            gbdt_only = only.model.encoder.gbdt
            print(json.dumps({"margin_fit_trees_and_precompute_s": round(time.perf_counter() - t0, 1),
                              "margin_fit_trees_and_precompute_cpu_s": round(time.process_time() - c0, 1),
                              "fitted_trees": gbdt_only.fitted_trees.tolist() if hasattr(gbdt_only, "fitted_trees") else None,
                              "margin_only_columns": {k: list(v.shape) for k, v in columns.items()}}), flush=True)
            margin_cfg, _ = load_pipeline(args.margin_pipeline, over)
            variants["margin"] = (same_trees_module(replace(prep, cfg=margin_cfg), only), TableDataModule)
            variants["margin_only"] = (only, TableDataModule)
        variants = {k: v for k, v in variants.items() if k == "plain" or k in args.variants}
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        # copies made before any training: a trained module holds non-leaf tensors deepcopy refuses
        fresh = {(r, name): copy.deepcopy(m) for r in range(args.rounds) for name, (m, _) in variants.items()}
        t = cfg.trainer
        for r in range(args.rounds):
            for name, (_, dm_cls) in variants.items():
                dm = dm_cls(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed)
                clock = TrainClock()
                trainer, _, _ = make_trainer(cfg, Path(tmp) / f"{name}{r}", [clock])
                trainer.fit(fresh[r, name], datamodule=dm)
                wall, cpu = clock.rows_per_sec()
                results[name].append((wall, cpu))
                print(json.dumps({"round": r, "variant": name, "rows_per_sec_wall": round(wall), "rows_per_cpu_sec": round(cpu),
                                  "load": os.getloadavg()}), flush=True)
    ratios = {
        name: {kind: round(sum(x[i] / p[i] for x, p in zip(runs, results["plain"])) / args.rounds, 3)
               for i, kind in enumerate(("wall", "cpu"))}
        for name, runs in results.items() if name != "plain"
    }
    print(json.dumps({"ratio_to_plain": ratios}, indent=1))


if __name__ == "__main__":
    main()
