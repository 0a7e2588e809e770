"""Encoder options measured side by side: test AUC per task for named variants of one pipeline.

    python benchmarks/encoder_options.py pipelines/synthetic_drift_mmoe.yaml --seeds 1 2 3 \
        --variants default id_l2 wide --json out.json

A variant is a list of ``--set`` overrides (:data:`VARIANTS`); every run of a seed uses the same
data and split, so rows compare at the same seed. Prints one markdown table (mean ± std over
seeds, best validation step / epoch, fit seconds); ``--json`` writes every run's metrics. Run
folders go to a temporary folder, never the repo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

#: variant → pipeline overrides (the encoder section, trainer options)
VARIANTS: dict[str, list[str]] = {
    "default": [],
    # DIN mini-batch aware L2, λ / n_j on the rows of each batch
    "id_l2_1e-3": ["encoder.id_regularization={l2: 1.0e-3}"],
    "id_l2_1e-2": ["encoder.id_regularization={l2: 1.0e-2}"],
    "id_l2_3e-2": ["encoder.id_regularization={l2: 3.0e-2}"],
    "id_l2_1e-1": ["encoder.id_regularization={l2: 1.0e-1}"],
    "id_maxnorm": ["encoder.id_regularization={max_norm: 0.5}"],
    # rare ids replaced by OOV more often: rate · min(1, 20 / n)
    "id_dropout_count": ["encoder.id_dropout={rate: 0.3, min_vocab: 1000, rare_count: 20}"],
    "wide": ["encoder.wide={min_vocab: 100, l2: 1.0e-3}"],
    "wide_l2_1e-2": ["encoder.wide={min_vocab: 100, l2: 1.0e-2}"],
    "emb_auto": ["encoder.embedding_dim={rule: auto}"],
    # piecewise-linear numeric embeddings (census recipe), alone and with the id L2
    "ple": ["encoder.numeric_embedding={kind: piecewise_linear, n_bins: 32, d_embedding: 8}"],
    "ple+id_l2_1e-2": ["encoder.numeric_embedding={kind: piecewise_linear, n_bins: 32, d_embedding: 8}",
                       "encoder.id_regularization={l2: 1.0e-2}"],
    "ple+id_l2_1e-1": ["encoder.numeric_embedding={kind: piecewise_linear, n_bins: 32, d_embedding: 8}",
                       "encoder.id_regularization={l2: 1.0e-1}"],
    # each id's log train count as an input (what the practitioner's frequency rank gives trees)
    "id_counts": ["encoder.id_counts={min_vocab: 100}"],
    "id_counts+id_l2": ["encoder.id_counts={min_vocab: 100}", "encoder.id_regularization={l2: 1.0e-3}"],
    "id_counts+wide": ["encoder.id_counts={min_vocab: 100}", "encoder.wide={min_vocab: 100, l2: 1.0e-3}"],
    "id_counts+drop_count": ["encoder.id_counts={min_vocab: 100}",
                             "encoder.id_dropout={rate: 0.3, min_vocab: 1000, rare_count: 20}"],
    # census: its categorical tables have 3-53 rows, so the wide part covers every column
    "wide_all": ["encoder.wide={min_vocab: 2, l2: 1.0e-3}"],
    "val_every_100": ["trainer.val_check_interval=100", "trainer.patience=6"],
    "val_every_20": ["trainer.val_check_interval=20", "trainer.patience=6"],
    "wide+id_l2": ["encoder.wide={min_vocab: 100, l2: 1.0e-3}", "encoder.id_regularization={l2: 1.0e-3}"],
    "wide+id_l2+val20": ["encoder.wide={min_vocab: 100, l2: 1.0e-3}", "encoder.id_regularization={l2: 1.0e-3}",
                         "trainer.val_check_interval=20", "trainer.patience=6"],
}


def run_one(pipeline: Path, variant: str, seed: int, extra: list[str], runs_dir: Path) -> dict[str, Any]:
    sets = [*VARIANTS[variant], f"trainer.seed={seed}", "trainer.progress_bar=false", f"runs_dir={runs_dir}", *extra]
    cfg, spec = load_pipeline(pipeline, sets)
    started = time.perf_counter()
    m = fit(cfg, spec).metrics
    m["wall_seconds"] = round(time.perf_counter() - started, 1)
    shown = " ".join(f"{k}={v:.4f}" for k, v in m["test"].items() if k.endswith("/auc"))
    print(f"{variant} seed {seed}: {shown} best={m['best_checkpoint']} epoch={m['best_epoch']} {m['wall_seconds']}s",
          file=sys.stderr, flush=True)
    return m


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    first = next(iter(results.values()))[0]
    tasks = [k.removesuffix("/auc") for k in first["test"] if k.endswith("/auc") and k != "auc_mean"]
    lines = ["| variant | seeds | " + " | ".join(f"{t} test AUC" for t in tasks) + " | val auc_mean | best epoch | fit s |",
             "|---|---|" + "---|" * (len(tasks) + 3)]
    for name, runs in results.items():
        cells = []
        for t in tasks:
            vals = [r["test"][f"{t}/auc"] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}" if len(vals) > 1 else f"{vals[0]:.4f}")
        val = statistics.mean(r["val"]["auc_mean"] for r in runs)
        epochs = ", ".join(str(r["best_epoch"]) for r in runs)
        secs = statistics.mean(r["fit_seconds"] for r in runs)
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {val:.4f} | {epochs} | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--set", action="append", default=[], help="extra override for every run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seed-major: a partial run still compares variants at equal seeds
            for v in args.variants:
                results.setdefault(v, []).append(run_one(args.pipeline, v, seed, args.set, Path(tmp)))
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
