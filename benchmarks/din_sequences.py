"""Sequence models on sequence-driven synthetic data (3 seeds): DIN target attention vs mean
pooling under MMoE, and DTRN (MMoE inside) with and without its task-specific interest module.

    python benchmarks/din_sequences.py --rows 40000 --seeds 1 2 3 --epochs 8
    python benchmarks/din_sequences.py --configs target_attention dtrn dtrn_interest --epochs 6 --batch-size 256

Data: :mod:`recsys_mtl.data.synthetic_sequences` (targets depend on candidate × history), one
generated table split 70/15/15 (seed 2018); spec ``feature_specs/sequence_synthetic.yaml`` with
the history pooled by ``target_attention`` or ``mean`` (everything else equal). Configurations
(``--configs``): ``target_attention`` and ``mean`` are MMoE with that pooling; ``dtrn`` is DTRN's
per-task SENet around the same MMoE, ``dtrn_interest`` adds the task-specific interest module
(both with target attention). Selection on validation click AUC; prints test AUC and GAUC (by
user) per task, mean ± std over seeds, and train rows/s. Run folders and data go to a temporary
folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
import yaml
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[1]
POOLINGS = {
    "target_attention": {"pooling": "target_attention", "attention": {"query": "item_id"}},
    "mean": {"pooling": "mean"},
}
MMOE = {"num_experts": 4, "expert_hidden": [64], "tower_hidden": [32]}
#: configuration → (history pooling, model)
CONFIGS = {
    "target_attention": ("target_attention", {"name": "mmoe", "params": MMOE}),
    "mean": ("mean", {"name": "mmoe", "params": MMOE}),
    "dtrn": ("target_attention", {"name": "dtrn", "params": {"inner": {"name": "mmoe", "params": MMOE}}}),
    "dtrn_interest": ("target_attention", {"name": "dtrn", "params": {
        "inner": {"name": "mmoe", "params": MMOE}, "interest": {}}}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--configs", "--poolings", nargs="+", default=list(POOLINGS), choices=list(CONFIGS))
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--interest", type=json.loads, default={}, help="JSON: dtrn_interest's interest params")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="din_bench_"))
    data = tmp / "data.parquet"
    df = generate_sequences(SequenceDataConfig(rows=args.rows, seed=0))
    df.write_parquet(data)
    # the ceiling: AUC of the true probabilities the labels were drawn from (whole table)
    for task in ("click", "like"):
        oracle = binary_auroc(torch.from_numpy(df[f"p_{task}"].to_numpy()), torch.from_numpy(df[task].to_numpy()))
        print(f"oracle {task} AUC {float(oracle):.4f}")
    base_spec = yaml.safe_load((ROOT / "feature_specs" / "sequence_synthetic.yaml").read_text())
    results: dict[str, list[dict]] = {}
    for config in args.configs:
        pooling, model = CONFIGS[config]
        if config == "dtrn_interest":
            model = {"name": "dtrn", "params": {**model["params"], "interest": args.interest}}
        spec = dict(base_spec)
        spec["features"] = [
            {**{k: v for k, v in f.items() if k not in ("pooling", "attention")}, **POOLINGS[pooling]} if f["name"] == "history" else f
            for f in base_spec["features"]
        ]
        spec_file = tmp / f"spec_{config}.yaml"
        spec_file.write_text(yaml.safe_dump(spec))
        pipeline = {
            "name": f"din_{config}", "spec": str(spec_file),
            "data": {"kind": "files", "train": str(data), "valid_fraction": 0.15, "test_fraction": 0.15},
            "model": model,
            "trainer": {"max_epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": 3,
                        "monitor": "val/click/auc", "progress_bar": False},
            "runs_dir": str(tmp / "runs"),
        }
        pipe_file = tmp / f"pipeline_{config}.yaml"
        pipe_file.write_text(yaml.safe_dump(pipeline))
        for seed in args.seeds:
            cfg, loaded = load_pipeline(pipe_file, [f"trainer.seed={seed}"])
            m = fit(cfg, loaded).metrics
            results.setdefault(config, []).append(m)
            print(config, seed, {k: round(v, 4) for k, v in m["test"].items() if "auc" in k}, flush=True)
    cols = ["click/auc", "click/gauc", "like/auc", "like/gauc"]
    print("\n| configuration | " + " | ".join(f"test {c}" for c in cols) + " | train rows/s | params |")
    print("|---|" + "---|" * (len(cols) + 2))
    for config, runs in results.items():
        cells = []
        for c in cols:
            vals = [r["test"][c] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
        rate = statistics.mean(r["train_rows_per_sec"] for r in runs)
        print(f"| {config} | " + " | ".join(cells) + f" | {rate:,.0f} | {runs[0]['params']:,} |")


if __name__ == "__main__":
    main()
