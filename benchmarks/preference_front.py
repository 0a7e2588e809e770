"""Trade-off front: one preference-conditioned model vs separately trained static-weight models.

    python benchmarks/preference_front.py --out docs/preference_front.png

Synthetic data with conflicting tasks (``pipelines/synthetic_mmoe.yaml``, task correlation −0.5),
a deliberately small MMoE so the tasks compete for capacity. Static models: one per weighting
``(w, 1−w)`` for ``w`` in ``--weights``, ``--epochs`` each. The preference model (``model.name:
preference`` wrapping the same MMoE, ``balancing: preference``) gets the same total budget:
``len(weights) × epochs`` epochs. Both are scored on the test split, the preference model once
per preference ``(w, 1−w)``; the table and plot show per-task test log loss and AUC. With
``--reference``, static models trained with the whole budget *each* (5× the compute) are added,
as the front the single model should approach.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.tensors import features_only
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import load_run

ROOT = Path(__file__).resolve().parents[1]
BASE = {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [8]}


def _score(run_dir: Path, prefs: list[list[float] | None]) -> list[dict[str, float]]:
    run = load_run(run_dir)
    test = load_splits(run.cfg.data).test
    cols = features_only(run.preprocessor.transform(test).columns())
    labels = run.preprocessor.transform(test).labels
    out = []
    with torch.no_grad():
        for p in prefs:
            batch = {**cols, **({"preference": torch.tensor(p).expand(len(labels), -1)} if p is not None else {})}
            logits = run.model(batch)
            row: dict[str, float] = {}
            for k, t in enumerate(run.model.task_names):
                row[f"{t}/logloss"] = float(F.binary_cross_entropy_with_logits(logits[t], labels[:, k]))
                row[f"{t}/auc"] = float(binary_auroc(torch.sigmoid(logits[t]), labels[:, k].long()))
            out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--correlation", type=float, default=-0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reference", action="store_true", help="also static models with the whole budget each")
    p.add_argument("--out", default="preference_front.png")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pref_front_"))
    common = [f"data.rows={args.rows}", f"data.task_correlation={args.correlation}", f"data.cache_dir={tmp}",
              "trainer.progress_bar=false", f"runs_dir={tmp / 'runs'}", f"trainer.seed={args.seed}", "trainer.patience=1000",
              f"trainer.batch_size={args.batch_size}"]
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", common)

    rows = []
    budget = args.epochs * len(args.weights)
    for kind, epochs in [("static", args.epochs)] + ([("static, whole budget each", budget)] if args.reference else []):
        for w in args.weights:
            c = cfg.model_copy(update={
                "model": cfg.model.model_copy(update={"params": BASE}),
                "balancing": cfg.balancing.model_copy(update={"name": "static", "params": {"weights": {"task0": 2 * w, "task1": 2 * (1 - w)}}}),
                "trainer": cfg.trainer.model_copy(update={"max_epochs": epochs}),
            })
            (score,) = _score(fit(c, spec).run_dir, [None])
            rows.append({"kind": kind, "w": w, **score})
            print(json.dumps(rows[-1]))
    c = cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"name": "preference", "params": {"base": "mmoe", "base_params": BASE}}),
        "balancing": cfg.balancing.model_copy(update={"name": "preference", "params": {}}),
        "trainer": cfg.trainer.model_copy(update={"max_epochs": budget}),
    })
    pref_run = fit(c, spec).run_dir
    for w, score in zip(args.weights, _score(pref_run, [[w, 1 - w] for w in args.weights])):
        rows.append({"kind": "preference", "w": w, **score})
        print(json.dumps(rows[-1]))

    print("\n| model | w (task0 weight / preference) | task0 logloss | task1 logloss | task0 AUC | task1 AUC |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['w']:.1f} | {r['task0/logloss']:.4f} | {r['task1/logloss']:.4f} | {r['task0/auc']:.4f} | {r['task1/auc']:.4f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for kind, marker in zip(dict.fromkeys(r["kind"] for r in rows), "o^s"):
        pts = [r for r in rows if r["kind"] == kind]
        xs, ys = [r["task0/logloss"] for r in pts], [r["task1/logloss"] for r in pts]
        ax.plot(xs, ys, marker=marker, label=f"{kind} ({'one model' if kind == 'preference' else f'{len(pts)} models'})")
        for r, x, y in zip(pts, xs, ys):
            ax.annotate(f"{r['w']:.1f}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("task0 test log loss")
    ax.set_ylabel("task1 test log loss")
    ax.set_title(f"test log loss; budget {budget} epochs in all", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
