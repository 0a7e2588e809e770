"""RMTL vs equal weighting on synthetic session data.

    python benchmarks/rmtl.py --seeds 1 2 3
    python benchmarks/rmtl.py --pipeline --model home --seeds 1 2 3   # through fit(), rl: rmtl on/off

Synthetic rows (``recsys_mtl.data.synthetic``, 2 binary tasks, task correlation −0.5) cut into
sessions of 5–15 consecutive rows; each session adds its own offset to both tasks' targets before
the labels are thresholded (a session-level propensity the features do not show), so rewards are
correlated within a session. The last 20% of sessions are the test split. Both arms run the same
loop (:class:`recsys_mtl.balancing.rmtl.RMTL`, same model, optimiser, epochs and batches);
equal weighting is ``weight_scale = 0`` (every loss weight 1).

``--pipeline``: the same data written as train/valid/test Parquet files (valid: the sessions
between 70% and 80%), a spec with ``group_by: session``, and one pipeline file per arm fitted by
:func:`recsys_mtl.train.fit.fit` — with ``rl: {name: rmtl}`` and without (plain equal weighting),
so checkpoint selection on validation, early stopping and the test metrics are those of any run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np
import polars as pl
import torch
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.balancing.rmtl import RMTL, RMTLConfig, SessionEnv
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import load_pipeline, load_spec
from recsys_mtl.train.fit import fit
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def session_data(rows: int, seed: int) -> pl.DataFrame:
    df = generate(SyntheticConfig(rows=rows, num_tasks=2, task_correlation=-0.5, seed=seed))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 16, size=rows)
    session = np.repeat(np.arange(rows), lengths)[:rows]
    offset = rng.normal(0, 1.0, size=session.max() + 1)[session]
    out = {"session": session}
    for k in range(2):
        y = df[f"y{k}"].to_numpy() + offset
        out[f"label{k}"] = (y > np.quantile(y, 0.7)).astype(np.int8)
    return df.with_columns(**{k: pl.Series(v) for k, v in out.items()})


MODELS = {"mmoe": {"num_experts": 4, "expert_hidden": [32], "tower_hidden": [16]},
          "home": {"num_levels": 1, "global_experts": 2, "task_experts": 1, "expert_hidden": [32], "expert_norm": True}}


def pipeline_arm(df: pl.DataFrame, seed: int, model: str, epochs: int, weight_scale: float | None, folder: Path) -> tuple[float, float]:
    """Test AUCs of one fit from a pipeline file (``weight_scale`` None: no ``rl`` section)."""
    cut_valid, cut_test = (int(df["session"].quantile(q)) for q in (0.7, 0.8))
    parts = {"train": df.filter(pl.col("session") <= cut_valid),
             "valid": df.filter((pl.col("session") > cut_valid) & (pl.col("session") <= cut_test)),
             "test": df.filter(pl.col("session") > cut_test)}
    for name, part in parts.items():
        part.write_parquet(folder / f"{name}.parquet")
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml").model_dump(mode="json", exclude_defaults=True)
    spec["group_by"] = "session"
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    pipeline = {
        "name": f"rmtl_bench_{model}", "spec": "spec.yaml",
        "data": {"kind": "files", **{k: f"{k}.parquet" for k in parts}},
        "model": {"name": model, "params": MODELS[model]},
        "trainer": {"max_epochs": epochs, "batch_size": 512, "lr": 3e-3, "seed": seed, "progress_bar": False, "patience": 2},
        "runs_dir": str(folder / "runs"),
    }
    if weight_scale is not None:
        pipeline["rl"] = {"name": "rmtl", "params": {"session_column": "session", "weight_scale": weight_scale}}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    cfg, spec_ = load_pipeline(folder / "pipeline.yaml")
    test = fit(cfg, spec_).metrics["test"]
    return test["task0/auc"], test["task1/auc"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--weight-scale", type=float, default=0.5)
    p.add_argument("--pipeline", action="store_true", help="fit pipeline files (rl: rmtl vs none) instead of the plain loop")
    p.add_argument("--model", choices=sorted(MODELS), default="mmoe", help="--pipeline: the model family")
    args = p.parse_args()
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml")
    spec = spec.model_copy(update={"ignore": [*spec.ignore, "session"]})
    res: dict[str, list[tuple[float, float]]] = {"equal": [], "rmtl": []}
    for seed in args.seeds:
        df = session_data(args.rows, seed)
        if args.pipeline:
            for arm, scale in (("equal", None), ("rmtl", args.weight_scale)):
                with tempfile.TemporaryDirectory() as tmp:
                    aucs = pipeline_arm(df, seed, args.model, args.epochs, scale, Path(tmp))
                res[arm].append(aucs)
                print(f"seed {seed} {arm} ({args.model}, pipeline): test AUC {aucs[0]:.4f} {aucs[1]:.4f}")
            continue
        cut = int(df["session"].quantile(0.8))
        train, test = df.filter(pl.col("session") <= cut), df.filter(pl.col("session") > cut)
        pre = Preprocessor.fit(spec, train)
        tr, te = pre.transform(train), pre.transform(test)
        env = SessionEnv.build(tr, train["session"].to_list())
        for arm, scale in (("equal", 0.0), ("rmtl", args.weight_scale)):
            torch.manual_seed(seed)
            model = build_model("mmoe", {"num_experts": 4, "expert_hidden": [32], "tower_hidden": [16]},
                                ModelContext(layout=pre.layout, tasks=spec.tasks))
            agent = RMTL(model, RMTLConfig(weight_scale=scale), lr=3e-3)
            logs = agent.fit(env, args.epochs, batch_size=512, seed=seed)
            with torch.no_grad():
                out = model(features_only(te.columns()))
            aucs = tuple(float(binary_auroc(torch.sigmoid(out[f"task{k}"]), te.labels[:, k].long())) for k in range(2))
            res[arm].append(aucs)
            print(f"seed {seed} {arm}: test AUC {aucs[0]:.4f} {aucs[1]:.4f}; last-epoch mean loss weights "
                  + " ".join(f"{logs[-1][f'weight/task{k}']:.3f}" for k in range(2)))
    print("\n| arm | seeds | task0 test AUC | task1 test AUC | Δ mean AUC vs equal, same seed |")
    print("|---|---|---|---|---|")
    for arm, vals in res.items():
        d = [np.mean(v) - np.mean(e) for v, e in zip(vals, res["equal"])]
        cell = lambda xs: f"{statistics.mean(xs):.4f} ± {statistics.pstdev(xs):.4f}"  # noqa: E731
        print(f"| {arm} | {len(vals)} | {cell([v[0] for v in vals])} | {cell([v[1] for v in vals])} | "
              + ("–" if arm == "equal" else f"{statistics.mean(d):+.4f} ± {statistics.pstdev(d):.4f}") + " |")


if __name__ == "__main__":
    main()
