"""Per-task best validation epochs of ``recsys-mtl baseline`` folders, and the validation Δm the multitask
run would have if each task were read at its own best epoch (as its single-task model is).

Validation only: the run folders keep the mean-selected and the last checkpoint, not one per epoch, so
the test side of per-task selection cannot be computed from them. Issue #21's diagnosis of negative
transfer on the drift recipe (docs/history.md, entry h-notes-h31drift):

    python benchmarks/per_task_epochs.py runs/h31/stem_s*/*-baselines-* --json per_task.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from recsys_mtl.baselines.compare import METRIC_SIGN, delta_m, relative_gain
from recsys_mtl.spec import load_spec


def val_curve(metrics_csv: Path, key: str) -> list[float]:
    """Validation values of ``key`` (e.g. ``val/click/auc``) in logged order, one per validation; the last
    row of a fit is the re-validation of the selected checkpoint, so it repeats an earlier value."""
    with metrics_csv.open(newline="") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def best(values: list[float], metric: str) -> tuple[float, int]:
    """Best value and its index (the validation, i.e. the epoch without ``val_check_interval``)."""
    pick = max(values) if METRIC_SIGN[metric] > 0 else min(values)
    return pick, values.index(pick)


def analyse(folder: Path) -> dict[str, Any]:
    """One baseline folder (one or more seeds): per task and seed, the multitask run's best epoch and
    value of that task, the single-task run's, and the per-task-selection Δm."""
    spec = load_spec(next(folder.glob("multitask/*/spec.yaml")))
    metrics = {t.name: t.metric_names[0] for t in spec.tasks}
    out: dict[str, Any] = {}
    for mt_dir in sorted(folder.glob("multitask/*")):
        seed = json.loads((mt_dir / "metrics.json").read_text())["seed"]
        mt, st = {}, {}
        for task, metric in metrics.items():
            key = f"val/{task}/{metric}"
            mt[task] = best(val_curve(next(mt_dir.glob("logs/**/metrics.csv")), key), metric)
            for st_dir in sorted(folder.glob(f"single_task/*-single-{task}-*")):
                if json.loads((st_dir / "metrics.json").read_text())["seed"] == seed:
                    st[task] = best(val_curve(next(st_dir.glob("logs/**/metrics.csv")), key), metric)
        entry: dict[str, Any] = {"multitask": {t: {"value": v, "epoch": e} for t, (v, e) in mt.items()}}
        if len(st) == len(metrics):
            entry["single_task"] = {t: {"value": v, "epoch": e} for t, (v, e) in st.items()}
            gains = {t: relative_gain(mt[t][0], st[t][0], m) for t, m in metrics.items()}
            entry["delta_m_val_per_task_selection"] = delta_m({t: v for t, (v, _) in mt.items()}, {t: v for t, (v, _) in st.items()}, metrics)
            entry["worst_task_gain"] = min(gains.values())
        out[str(seed)] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    report = {str(folder): analyse(folder) for folder in args.folders}
    for folder, by_seed in report.items():
        for seed, e in by_seed.items():
            line = f"{folder}  seed {seed}  multitask per-task best: " + " ".join(
                f"{t} {v['value']:.4f}@{v['epoch']}" for t, v in e["multitask"].items())
            if "single_task" in e:
                line += "  single-task: " + " ".join(f"{t} {v['value']:.4f}@{v['epoch']}" for t, v in e["single_task"].items())
                line += f"  Δm val {e['delta_m_val_per_task_selection'] * 100:+.2f} %  worst task {e['worst_task_gain'] * 100:+.2f} %"
            print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
