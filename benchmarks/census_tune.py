"""Census-income MMoE study: tuned (Pareto front over income / marital val AUC) vs the untuned default.

    python benchmarks/census_tune.py [--trials 30] [--epochs 15] [--part both|study|default]

Runs the study of pipelines/census_mmoe_tune.yaml (trials see train/val only), refits the front's
best-income trial with the full trainer settings (tested once), fits the untuned default
pipelines/census_mmoe.yaml the same way, and prints both plus the Pareto front as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from recsys_mtl.tune import plan_study, summary_table, tune
from recsys_mtl.tune.study import pareto_front

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--runs-dir", default=str(ROOT / "bench" / "census_tune"))
    ap.add_argument("--epochs", type=int, default=15, help="max epochs of the refit and of the default fit (same budget)")
    ap.add_argument("--part", choices=("both", "study", "default"), default="both", help="run the two halves as separate processes")
    args = ap.parse_args()
    runs = Path(args.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    epochs = [f"trainer.max_epochs={args.epochs}"]
    if args.part == "default":
        cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", epochs)
        default = fit(cfg.model_copy(update={"runs_dir": runs}), spec)
        out = {k: default.metrics[k] for k in ("val", "test", "best_epoch", "fit_seconds")}
        print(json.dumps(out, indent=1))
        (runs / "census_default_result.json").write_text(json.dumps(out, indent=1))
        return

    started = time.perf_counter()
    plan = plan_study(ROOT / "pipelines" / "census_mmoe_tune.yaml", epochs, n_trials=args.trials, runs_dir=runs)
    result = tune(plan)
    study_seconds = time.perf_counter() - started
    print(summary_table(result))

    out: dict = {
        "study_seconds": round(study_seconds, 1),
        "states": {s: sum(t.state.name == s for t in result.study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "pareto_front": [
            {"trial": t.number, "val_income_auc": t.values[0], "val_marital_auc": t.values[1], "params": t.user_attrs["assignments"]}
            for t in pareto_front(result.study, plan)
        ],
        "default_trial_val": result.study.trials[0].values,
        "tuned": {"trial": result.chosen.number if result.chosen else None, **({k: result.refit.metrics[k] for k in ("val", "test", "best_epoch", "fit_seconds")} if result.refit else {})},
    }
    if args.part == "both":
        cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", epochs)
        default = fit(cfg.model_copy(update={"runs_dir": runs}), spec)
        out["default"] = {k: default.metrics[k] for k in ("val", "test", "best_epoch", "fit_seconds")}
    print(json.dumps(out, indent=1))
    (runs / "census_tune_result.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
