"""Cold start with content vectors: ``dense`` user / item embeddings vs ids only, on items seen in
training and on items never seen there (3 seeds).

    python benchmarks/dense_coldstart.py --rows 30000 --seeds 1 2 3 --epochs 3

Data (generated, seed 0): ``users`` users and ``items`` items, each with a content vector c (D=16,
standard normal). The click logit of (user u, item i) is ``c_u · W c_i + a · c_i - 1`` (W random,
scaled 1/sqrt(D): a preference for content plus a content-driven popularity); a click is drawn from
it, and a like, given a click, from ``c_u · V c_i``. The vectors a model sees are the content
vectors plus N(0, 0.3²) noise (a "pretrained" embedding, not the truth). ``unseen_share`` of the
items are held out of training: their rows form the *unseen* test set; rows of the other items are
split into train / valid / *seen* test.

Configurations (MMoE, 4 experts, everything else equal): ``ids`` = user_id + item_id categorical
embeddings (an unseen item id is the OOV row); ``dense`` = the same ids plus ``user_emb`` and
``item_emb`` as ``dense`` features (size 16, L2-normalised). Selection on validation (seen items)
click AUC; prints test AUC per task on seen and unseen items, mean ± std over seeds, and writes
JSON next to the printed table when ``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import yaml
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.calibration import predict_logits
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import load_run

D = 16
TASKS = ("click", "like")


def generate(rows: int, users: int, items: int, unseen_share: float, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows of seen items, rows of unseen items): ids, noisy content vectors, click and like labels."""
    rng = np.random.default_rng(seed)
    cu, ci = rng.normal(size=(users, D)), rng.normal(size=(items, D))
    w, v = rng.normal(size=(D, D)) / np.sqrt(D), rng.normal(size=(D, D)) / np.sqrt(D)
    a = rng.normal(size=D) / np.sqrt(D)
    unseen = rng.random(items) < unseen_share
    n = int(rows / (1 - unseen_share))
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    logit = np.einsum("nd,de,ne->n", cu[u], w, ci[i]) + ci[i] @ a - 1.0
    click = rng.random(n) < 1 / (1 + np.exp(-logit))
    like = click & (rng.random(n) < 1 / (1 + np.exp(-np.einsum("nd,de,ne->n", cu[u], v, ci[i]))))
    noisy_u, noisy_i = cu + rng.normal(0, 0.3, cu.shape), ci + rng.normal(0, 0.3, ci.shape)
    df = pl.DataFrame({
        "user_id": [f"u{k}" for k in u], "item_id": [f"i{k}" for k in i],
        "user_emb": pl.Series(noisy_u[u].tolist(), dtype=pl.Array(pl.Float64, D)),
        "item_emb": pl.Series(noisy_i[i].tolist(), dtype=pl.Array(pl.Float64, D)),
        "click": click.astype(np.int8), "like": like.astype(np.int8),
    })
    mask = pl.Series(unseen[i])
    return df.filter(~mask), df.filter(mask)


def spec(dense: bool) -> dict[str, Any]:
    features: list[dict[str, Any]] = [{"kind": "categorical", "name": "user_id", "embedding_dim": 8},
                                      {"kind": "categorical", "name": "item_id", "embedding_dim": 8}]
    if dense:
        features += [{"kind": "dense", "name": c, "size": D, "normalize": True} for c in ("user_emb", "item_emb")]
    return {"name": "coldstart", "features": features, "tasks": [{"name": t, "label": t} for t in TASKS]}


def write_pipeline(tmp: Path, config: str, files: dict[str, Path], args: argparse.Namespace) -> Path:
    (tmp / f"spec_{config}.yaml").write_text(yaml.safe_dump(spec(config == "dense")))
    pipeline = {
        "name": f"coldstart_{config}", "spec": str(tmp / f"spec_{config}.yaml"),
        "data": {"kind": "files", **{k: str(v) for k, v in files.items()}},
        "model": {"name": "mmoe", "params": {"num_experts": 4, "expert_hidden": [64], "tower_hidden": [32]}},
        "trainer": {"max_epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": 2,
                    "monitor": "val/click/auc", "progress_bar": False},
        "runs_dir": str(tmp / "runs"),
    }
    path = tmp / f"pipeline_{config}.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def aucs(run_dir: Path, df: pl.DataFrame) -> dict[str, float]:
    run = load_run(run_dir)
    table = run.preprocessor.transform(df)
    logits = predict_logits(run.model, table)
    return {t: float(binary_auroc(logits[t].reshape(-1), torch.from_numpy(df[t].to_numpy()).int())) for t in TASKS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=30_000, help="rows of seen items (train + valid + seen test)")
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--unseen-share", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="coldstart_"))
    seen, unseen = generate(args.rows, args.users, args.items, args.unseen_share)
    seen = seen.sample(fraction=1.0, shuffle=True, seed=0)
    n_valid = n_test = seen.height // 10
    parts = {"train": seen[n_valid + n_test:], "valid": seen[:n_valid], "test": seen[n_valid:n_valid + n_test]}
    files = {}
    for name, df in parts.items():
        files[name] = tmp / f"{name}.parquet"
        df.write_parquet(files[name])
    print(f"rows: train {parts['train'].height}, valid {parts['valid'].height}, seen test {parts['test'].height}, "
          f"unseen test {unseen.height} ({unseen['item_id'].n_unique()} items never in train)")
    results: dict[str, list[dict[str, float]]] = {}
    for config in ("ids", "dense"):
        for seed in args.seeds:
            started = time.perf_counter()
            cfg, loaded = load_pipeline(write_pipeline(tmp, config, files, args), [f"trainer.seed={seed}"])
            run_dir = fit(cfg, loaded).run_dir
            row = {f"seen/{t}": v for t, v in aucs(run_dir, parts["test"]).items()}
            row |= {f"unseen/{t}": v for t, v in aucs(run_dir, unseen).items()}
            row["seconds"] = time.perf_counter() - started
            results.setdefault(config, []).append(row)
            print(config, seed, {k: round(v, 4) for k, v in row.items()}, flush=True)
    cols = [f"{s}/{t}" for s in ("seen", "unseen") for t in TASKS]
    print("\n| features | " + " | ".join(f"test AUC {c}" for c in cols) + " | s per seed |")
    print("|---|" + "---|" * (len(cols) + 1))
    for config, runs in results.items():
        cells = []
        for c in cols:
            vals = [r[c] for r in runs]
            cells.append(f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.4f}")
        print(f"| {config} | " + " | ".join(cells) + f" | {statistics.mean(r['seconds'] for r in runs):.0f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))


if __name__ == "__main__":
    main()
