"""The in-graph trees alone, from fitted run folders: their validation / test metric per task, the
tree count each task kept (early stopping on validation), and the with/without-network choice
made on validation.

A model with ``encoder.gbdt_leaves.margin`` holds a booster per task inside its graph; its score
without the network is the margin alone (:meth:`~recsys_mtl.nn.gbdt_leaves.GBDTLeaves.margins`).
Reading it from the saved checkpoint costs one tree walk of the valid and test splits, no refit.

    python benchmarks/census_trees_alone.py /tmp/runs_*/bench_* --json trees.json

Prints one line per run; ``choice`` per task is ``network`` when the full model's validation
metric (its metrics.json) beats the trees alone on validation, else ``trees``, and ``chosen test``
is the test metric of that choice (test read once per candidate, reported, never used to pick).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from recsys_mtl.baselines.compare import primary_metric
from recsys_mtl.baselines.tabular import evaluate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.train.fit import prepare
from recsys_mtl.train.run_folder import load_run


def trees_alone(run_dir: Path) -> dict[str, Any]:
    run = load_run(run_dir)
    encoders = [m for m in run.model.modules() if isinstance(m, FeatureEncoder) and m.gbdt is not None]
    if not encoders or not encoders[0].gbdt.cfg.margin:  # type: ignore[union-attr]
        raise SystemExit(f"{run_dir}: no gbdt_leaves with margin: true")
    enc = encoders[0]
    gbdt = enc.gbdt
    assert gbdt is not None
    prep = prepare(run.cfg, run.spec, preprocessor=run.preprocessor)
    gbdt_tasks = [i for i, t in enumerate(run.spec.tasks) if t.type in ("binary", "regression")]

    def scores(table: EncodedTable) -> dict[str, Any]:
        with torch.no_grad():
            m = gbdt.margins(gbdt.leaves(enc.gbdt_inputs({"categorical": table.categorical, "numeric": table.numeric})))
        return {run.spec.tasks[i].name: m[:, j].numpy() for j, i in enumerate(gbdt_tasks)}

    val, test = evaluate(run.spec.tasks, scores(prep.valid), prep.valid), evaluate(run.spec.tasks, scores(prep.test), prep.test)
    model = json.loads((run_dir / "metrics.json").read_text())
    kept = gbdt.fitted_trees.tolist() if hasattr(gbdt, "fitted_trees") else [gbdt.cfg.n_trees] * len(gbdt_tasks)
    out: dict[str, Any] = {"run": str(run_dir), "trees": {}, "choice": {}}
    for j, i in enumerate(gbdt_tasks):
        task = run.spec.tasks[i]
        key = f"{task.name}/{primary_metric(task)}"
        better = model["val"][key] > val[key] if primary_metric(task) == "auc" else model["val"][key] < val[key]
        out["trees"][task.name] = kept[j]
        out["choice"][task.name] = {
            "trees_val": val[key], "trees_test": test[key], "model_val": model["val"][key], "model_test": model["test"][key],
            "pick": "network" if better else "trees", "chosen_test": model["test"][key] if better else test[key],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--json")
    args = p.parse_args()
    rows = [trees_alone(r) for r in args.runs]
    for r in rows:
        cells = "; ".join(f"{t}: {c['trees_val']:.4f}/{c['trees_test']:.4f} trees vs {c['model_val']:.4f}/{c['model_test']:.4f} "
                          f"model (val/test) → {c['pick']}" for t, c in r["choice"].items())
        print(f"{r['run']}: trees kept {r['trees']}; {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
