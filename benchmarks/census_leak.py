"""Which census features give the marital label away? Single-feature LightGBM AUC per feature.

For every feature of a census pipeline's spec, one LightGBM on that column alone (same split and
fitted preprocessing as the pipeline, early stopping on validation AUC, test scored once), for
the task given (default marital). Prints a markdown table sorted by test AUC and, with
``--without``, the AUC of LightGBM on all features except each comma-separated set listed.

    python benchmarks/census_leak.py pipelines/census_mmoe.yaml --task marital
    python benchmarks/census_leak.py pipelines/census_mmoe.yaml --without "" det_hh_fam_stat det_hh_fam_stat,det_hh_summ
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from recsys_mtl.baselines.config import LightGBMParams
from recsys_mtl.baselines.lightgbm_tasks import lgb_params, require_lightgbm
from recsys_mtl.baselines.tabular import TreeColumns, evaluate, tree_matrix
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import prepare


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("pipeline")
    p.add_argument("--task", default="marital")
    p.add_argument("--without", nargs="*", default=None, help="comma-separated sets of features to leave out, one fit each")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    lgb = require_lightgbm()
    cfg, spec = load_pipeline(args.pipeline)
    prep = prepare(cfg, spec)
    col = [t.name for t in spec.tasks].index(args.task)
    task = spec.tasks[col]
    columns = TreeColumns.of(prep.preprocessor.layout)
    mats = {s: tree_matrix(getattr(prep, s)) for s in ("train", "valid", "test")}
    params = LightGBMParams()

    def fit(keep: list[int]) -> tuple[float, float]:
        cat = [i for i, j in enumerate(keep) if j in columns.categorical]
        names = [columns.names[j] for j in keep]
        ds = {s: lgb.Dataset(mats[s][:, keep], np.ascontiguousarray(getattr(prep, s).labels[:, col].numpy()), feature_name=names, categorical_feature=cat) for s in ("train", "valid")}
        ds["valid"].set_reference(ds["train"])
        b = lgb.train({**lgb_params(task, params, args.seed), "feature_fraction": 1.0}, ds["train"], params.max_rounds, valid_sets=[ds["valid"]],
                      callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
        out = []
        for s in ("valid", "test"):
            scores = {task.name: b.predict(mats[s][:, keep], raw_score=True, num_iteration=b.best_iteration)}
            out.append(evaluate(spec.tasks, scores, getattr(prep, s))[f"{task.name}/auc"])
        return out[0], out[1]

    started = time.perf_counter()
    if args.without is not None:
        print(f"| features left out | {args.task} val AUC | {args.task} test AUC |\n|---|---|---|")
        for dropped in args.without:
            drop = {d for d in dropped.split(",") if d}
            va, te = fit([j for j, n in enumerate(columns.names) if n not in drop])
            print(f"| {', '.join(sorted(drop)) or 'none'} | {va:.4f} | {te:.4f} |")
        print(f"({len(args.without)} fits, {time.perf_counter() - started:.0f} s)")
        return
    rows = []
    for j, name in enumerate(columns.names):
        rows.append((name, *fit([j])))
    rows.sort(key=lambda r: -r[2])
    print(f"| feature | {args.task} val AUC | {args.task} test AUC |\n|---|---|---|")
    for name, va, te in rows:
        print(f"| {name} | {va:.4f} | {te:.4f} |")
    print(f"({len(rows)} single-feature fits, {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
