"""Transformer / embedding model zoo on census-income, with an optional train-row budget.

    python benchmarks/census_models_tf.py --models stem --seeds 1 2 3
    python benchmarks/census_models_tf.py --models multitab ft_transformer --seeds 1 2 3 \
        --train-rows 20000 --valid-rows 10000 --test-rows 20000 --set trainer.max_epochs=2

Same protocol and table as ``benchmarks/census_models.py`` (whose helpers it reuses): each
model's ``pipelines/census_<model>.yaml``, test AUC at the validation-selected checkpoint, mean ±
std over seeds, params, training rows/s. ``--train-rows`` / ``--valid-rows`` / ``--test-rows``
use one fixed random subset of each split (seed 2018, the same for every model and seed):
transformer steps cost ~25× an MMoE step, and on a shared 2-core machine the full splits for
several epochs and seeds do not fit in a working session.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from census_models import model_source, table  # noqa: E402  (the shared benchmark's helpers)

import polars as pl  # noqa: E402

from recsys_mtl.data.sources import Splits, load_splits  # noqa: E402
from recsys_mtl.spec import load_pipeline  # noqa: E402
from recsys_mtl.train.run import fit  # noqa: E402


def subset(df: pl.DataFrame, rows: int) -> pl.DataFrame:
    return df.sample(rows, seed=2018) if 0 < rows < df.height else df


def run_one(model: str, seed: int, args: argparse.Namespace, cache: dict[str, Splits]) -> dict[str, Any]:
    pipeline, overrides = model_source(model)
    cfg, spec = load_pipeline(pipeline, [*overrides, f"trainer.seed={seed}", "trainer.progress_bar=false", *args.set])
    cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir), "name": f"bench_{model}"})
    key = str(cfg.data)
    if key not in cache:
        cache[key] = load_splits(cfg.data)
    splits = cache[key]
    # one fixed subset per split (seed 2018), so every model and seed sees the same rows
    splits = Splits(*(subset(df, n) for df, n in zip((splits.train, splits.valid, splits.test), (args.train_rows, args.valid_rows, args.test_rows))))
    m = fit(cfg, spec, splits).metrics
    aucs = " ".join(f"{k}={v:.4f}" for k, v in m["test"].items() if k.endswith("/auc"))
    print(f"{model} seed {seed}: {aucs} rows/s={m['train_rows_per_sec']} epochs={m['epochs_run']}", file=sys.stderr, flush=True)
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["multitab", "ft_transformer", "stem"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra pipeline override")
    p.add_argument("--train-rows", type=int, default=0, help="train on a fixed random subset of this many rows (0 = all)")
    p.add_argument("--valid-rows", type=int, default=0, help="validate on a fixed subset (0 = all)")
    p.add_argument("--test-rows", type=int, default=0, help="test on a fixed subset (0 = all)")
    p.add_argument("--runs-dir", default=tempfile.mkdtemp(prefix="recsys_bench_"))
    p.add_argument("--json", help="write every run's metrics here")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    cache: dict[str, Splits] = {}
    results = {m: [run_one(m, s, args, cache) for s in args.seeds] for m in args.models}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
