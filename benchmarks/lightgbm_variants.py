"""LightGBM per task, three ways, on a pipeline's own split and fitted preprocessing (no network).

* ``practitioner``: the ``lightgbm`` side of ``recsys-mtl baseline`` (high-cardinality ids as
  frequency rank or smoothed native categoricals, or every categorical as its frequency rank
  (``rank_all``), chosen on validation per task; early stopping on AUC / l2);
* ``plain``: every categorical native with LightGBM's default smoothing (``lightgbm_plain``);
* ``ordered_ids``: what ``baseline`` fitted before this branch: every categorical without a
  shared table was taken for a bucketed numeric, so LightGBM saw the vocabulary index (the
  training-frequency rank) as an ordered number, low-cardinality columns included.

Prints a markdown table of test metrics (mean ± std over seeds) and writes JSON with ``--json``.

    python benchmarks/lightgbm_variants.py pipelines/census_noleak_mmoe.yaml --seeds 1 2 3
    python benchmarks/lightgbm_variants.py pipelines/census_mmoe.yaml --seeds 1 --variants practitioner
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from statistics import mean, stdev
from typing import Any

from recsys_mtl.baselines.compare import primary_metric
from recsys_mtl.baselines.config import LightGBMParams, PractitionerParams
from recsys_mtl.baselines.lightgbm_tasks import fit_lightgbm_per_task
from recsys_mtl.baselines.practitioner import fit_practitioner_lightgbm
from recsys_mtl.baselines.tabular import TreeColumns
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import prepare

#: the rows this benchmark can fit
VARIANTS = ("practitioner", "plain", "ordered_ids")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("pipeline")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--json", help="write the per-seed results here")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="which rows to fit (practitioner always)")
    args = p.parse_args()
    cfg, spec = load_pipeline(args.pipeline)
    started = time.perf_counter()
    prep = prepare(cfg, spec)
    columns = TreeColumns.of_preprocessor(prep.preprocessor)
    shared = {f.name for f in spec.categorical if f.shared_table is not None}
    ordered = replace(columns, categorical=[i for i in columns.categorical if columns.names[i] in shared])
    params = LightGBMParams()
    splits = (spec.tasks, prep.train, prep.valid, prep.test)
    results: dict[str, dict[int, Any]] = {v: {} for v in VARIANTS if v in args.variants or v == "practitioner"}
    choices: dict[int, Any] = {}
    trees: dict[int, Any] = {}
    for seed in args.seeds:
        r = fit_practitioner_lightgbm(*splits, columns, params, PractitionerParams(), seed)  # type: ignore[arg-type]
        results["practitioner"][seed], choices[seed] = r["test"], {t: c for t, c in r["choice"].items()}
        trees[seed] = r["best_iteration"]
        if "plain" in results:
            # when every task kept the plain encoding ("none") the practitioner's model is the plain one
            same = all(c["encoding"] == "none" for c in r["choice"].values())
            results["plain"][seed] = r["test"] if same else fit_lightgbm_per_task(*splits, columns, params, seed)["test"]  # type: ignore[arg-type]
        if "ordered_ids" in results:
            results["ordered_ids"][seed] = fit_lightgbm_per_task(*splits, ordered, params, seed)["test"]  # type: ignore[arg-type]
        row = {name: {k: round(v, 4) for k, v in by_seed[seed].items() if k.endswith(("/auc", "/rmse"))} for name, by_seed in results.items()}
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s): {row}; choice {choices[seed]}; trees {trees[seed]}", flush=True)
    keys = [f"{t.name}/{primary_metric(t)}" for t in spec.tasks]
    print(f"\n{cfg.name}, seeds {args.seeds}, test\n")
    print("| LightGBM | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, by_seed in results.items():
        cells = []
        for k in keys:
            v = [by_seed[s][k] for s in args.seeds]
            cells.append(f"{mean(v):.4f} ± {stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\npractitioner's choice per seed: {choices}; total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pipeline": cfg.name, "seeds": args.seeds, "results": results, "choices": choices, "best_iteration": trees}, f, indent=2)


if __name__ == "__main__":
    main()
