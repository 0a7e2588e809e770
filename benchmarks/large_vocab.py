"""Training cost against vocabulary size: 1k × 1k ids next to >= 1M users × >= 300k items.

    python benchmarks/large_vocab.py --out /tmp/recsys_vocab

1. Writes two datasets (unless present) of ``--rows`` training rows with a ``user`` and an
   ``item`` id column, two small categoricals, four numbers and two binary tasks whose labels
   depend on per-user and per-item effects:
   - ``small``: ids drawn Zipf-like (exponent 1.1) from 1,000 users and 1,000 items;
   - ``large``: every one of ``--users`` users and ``--items`` items appears at least once, the
     remaining rows drawn Zipf-like from them (a head of heavy users, a long tail seen once).
2. For each case, in a fresh subprocess (its own peak RSS): ``recsys-mtl fit`` of one MMoE on
   it through the ``files`` source, ``--steps`` training batches of ``--batch-size`` rows, one
   epoch, validation and test included; the trainer's train rows/s (loading, forward, backward,
   optimizer step; per wall second and per process CPU second, the latter less sensitive to
   other jobs on a shared machine) and the process's peak RSS (``VmHWM``). Cases: ``small`` (its tables are
   below ``sparse_min_rows``, so dense Adam, as before), ``large`` with
   ``embedding_optimizer: dense`` (every table row stepped each batch), and ``large`` with the
   default (``auto``: row-sparse SparseAdam on the user and item tables).
Prints one JSON line per case and the ratio of the large sparse case to the small one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "large_vocab",
    "tasks": [{"name": "click", "label": "click", "type": "binary"}, {"name": "like", "label": "like", "type": "binary"}],
    "features": [
        {"name": "user", "kind": "categorical", "embedding_dim": 16},
        {"name": "item", "kind": "categorical", "embedding_dim": 16},
        {"name": "device", "kind": "categorical", "embedding_dim": 4},
        {"name": "hour", "kind": "categorical", "embedding_dim": 4},
        *({"name": f"x{i}", "kind": "numeric"} for i in range(4)),
    ],
}


def zipf_ids(rng: np.random.Generator, n: int, size: int, exponent: float = 1.1) -> np.ndarray:
    """``size`` draws from ids 0..n-1 with P(rank k) ∝ 1 / (k+1)^exponent, ranks shuffled over ids."""
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(n)[rng.choice(n, size=size, p=p / p.sum())]


def covering_ids(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Every id once, the rest Zipf-like, in random order (``size`` >= ``n``)."""
    return rng.permutation(np.concatenate([np.arange(n), zipf_ids(rng, n, size - n)]))


def write_case(folder: Path, users: int, items: int, rows: int, covering: bool, seed: int = 0) -> None:
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    user_effect, item_effect = rng.normal(0, 1, users), rng.normal(0, 1, items)
    for split, n in (("train", rows), ("valid", 50_000), ("test", 50_000)):
        path = folder / f"{split}.parquet"
        if path.exists():
            continue
        draw = covering_ids if covering and split == "train" else zipf_ids
        u, i = draw(rng, users, n), draw(rng, items, n)
        x = rng.normal(0, 1, (n, 4))
        logit = user_effect[u] + item_effect[i] + x[:, 0] - 0.5 * x[:, 1]
        df = pl.DataFrame({
            "user": np.char.add("u", u.astype(str)), "item": np.char.add("i", i.astype(str)),
            "device": rng.integers(0, 5, n).astype(str), "hour": rng.integers(0, 24, n).astype(str),
            **{f"x{k}": x[:, k] for k in range(4)},
            "click": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8),
            "like": (rng.random(n) < 1 / (1 + np.exp(-(0.7 * logit - 1)))).astype(np.int8),
        })
        df.write_parquet(path)


def pipeline(folder: Path, out: Path, args: argparse.Namespace, embedding_optimizer: str) -> Path:
    import yaml

    (out / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    raw = {
        "name": f"{folder.name}_{embedding_optimizer}",
        "spec": str(out / "spec.yaml"),
        "data": {"kind": "files", "train": str(folder / "train.parquet"), "valid": str(folder / "valid.parquet"), "test": str(folder / "test.parquet")},
        "model": {"name": "mmoe", "params": {"num_experts": 4, "expert_hidden": [64], "tower_hidden": [32]}},
        "trainer": {
            "max_epochs": 1, "batch_size": args.batch_size, "limit_train_batches": args.steps, "progress_bar": False,
            "embedding_optimizer": embedding_optimizer, "deterministic": False, "lr": 0.002,
        },
    }
    path = out / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


CHILD = """
import json, sys, time
from pathlib import Path
import lightning as L
import torch
torch.set_num_threads(1)
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

class CpuTime(L.Callback):
    # process CPU seconds of the training batches (as the Throughput callback counts wall time):
    # less sensitive than wall time to other jobs on a shared machine
    rows, seconds, mark = 0, 0.0, 0.0
    def on_train_epoch_start(self, trainer, pl_module):
        self.mark = time.process_time()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.process_time()
        self.seconds += now - self.mark
        self.mark = now
        self.rows += batch["labels"].shape[0]

cpu = CpuTime()
cfg, spec = load_pipeline(sys.argv[1], [f"runs_dir={sys.argv[2]}"])
m = fit(cfg, spec, extra_callbacks=[cpu]).metrics
hwm = next(int(l.split()[1]) / 1024 for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print("RESULT " + json.dumps({"rows_per_sec": m["train_rows_per_sec"], "rows_per_cpu_sec": round(cpu.rows / cpu.seconds, 1),
    "train_rows": m["train_rows"], "peak_rss_mib": round(hwm),
    "params": m["params"], "test_auc": {k: v for k, v in m["test"].items() if k.endswith("/auc")}}))
"""


def run_case(path: Path, runs: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(runs)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "recsys_vocab")
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--cases", nargs="+", default=["small:auto", "large:dense", "large:auto"])
    args = ap.parse_args()
    if args.rows < max(args.users, args.items):
        raise SystemExit("--rows must be at least --users and --items (every id appears in train)")
    write_case(args.out / "small", 1_000, 1_000, args.rows, covering=False)
    write_case(args.out / "large", args.users, args.items, args.rows, covering=True)
    results = {}
    for case in args.cases:
        data, optimizer = case.split(":")
        r = run_case(pipeline(args.out / data, args.out, args, optimizer), args.out / "runs")
        results[case] = r
        print(json.dumps({"case": case, **r}), flush=True)
    if "small:auto" in results and "large:auto" in results:
        ratios = {k: round(results["large:auto"][k] / results["small:auto"][k], 3) for k in ("rows_per_sec", "rows_per_cpu_sec")}
        print(json.dumps({"large_sparse_over_small": ratios}))


if __name__ == "__main__":
    main()
