"""One process vs ``fit --engine ray --workers 2`` (Ray Train, gloo) on the same pipeline and seeds;
and what Ray costs to start on this machine.

    python benchmarks/ray_fit.py --setup local --seeds 42 43 44 --out /tmp/ray_fit.jsonl
    python benchmarks/ray_fit.py --setup ray --seeds 42 43 44 --out /tmp/ray_fit.jsonl
    python benchmarks/ray_fit.py --setup startup --out /tmp/ray_fit.jsonl
    python benchmarks/ray_fit.py --table /tmp/ray_fit.jsonl       # the markdown table of the records

``local`` and ``ray`` run ``recsys-mtl fit`` (a fresh process each, so Ray starts from nothing, as a
user's command does) on pipelines/synthetic_mmoe.yaml (or ``--pipeline``) and record the test AUC per
task, the epochs run, the command's wall time and the fit's own ``fit_seconds``. Each Ray worker
takes half the pipeline's batch size, so the global batch and the optimizer steps match the single
process (as benchmarks/ddp.py does for local DDP): metrics should agree within seed noise.

``startup`` times Ray's fixed costs in one process: ``ray.init`` of a local instance, then a
``TorchTrainer`` of 2 workers whose training function does nothing (worker actors, the gloo process
group, the controller), then the same with a function that imports the library (what every worker
of a real fit pays before reading data).

On 2 shared cores two workers cannot be faster than one process (they share the same cores and add
an all-reduce per step): the measurement is correctness, and the start-up price, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def fit_record(pipeline: Path, setup: str, seed: int, extra: list[str]) -> dict[str, object]:
    from recsys_mtl.spec import load_pipeline

    cfg, _ = load_pipeline(pipeline, extra)
    batch = cfg.trainer.batch_size if setup == "local" else max(cfg.trainer.batch_size // 2, 1)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "recsys_mtl.cli", "fit", str(pipeline), "--runs-dir", tmp]
        if setup == "ray":
            cmd += ["--engine", "ray", "--workers", "2"]
        for o in [*extra, f"trainer.seed={seed}", f"trainer.batch_size={batch}", "trainer.progress_bar=false", "trainer.accelerator=cpu",
                  "trainer.deterministic=false"]:
            cmd += ["--set", o]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"fit failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        (run_dir,) = Path(tmp).iterdir()
        m = json.loads((run_dir / "metrics.json").read_text())
    test = m["test"]
    return {"setup": setup, "seed": seed, "epochs_run": m["epochs_run"], "batch_per_process": batch,
            "test_auc": {k: v for k, v in test.items() if k.endswith("/auc") or k == "auc_mean"},
            "command_seconds": round(wall, 1), "fit_seconds": m["fit_seconds"], "load": load()}


def _noop(config: dict[str, object]) -> None:
    pass


def _import_library(config: dict[str, object]) -> None:
    import recsys_mtl.train.fit  # noqa: F401  (torch, Lightning, polars and the models)


def startup_record() -> dict[str, object]:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    record: dict[str, object] = {"setup": "startup", "load": load()}
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    record["ray_init_seconds"] = round(time.perf_counter() - t0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("trainer_noop_seconds", _noop), ("trainer_import_seconds", _import_library)):
            t0 = time.perf_counter()
            TorchTrainer(fn, torch_config=TorchConfig(backend="gloo"), scaling_config=ScalingConfig(num_workers=2),
                         run_config=RunConfig(name=name, storage_path=tmp)).fit()
            record[name] = round(time.perf_counter() - t0, 1)
    ray.shutdown()
    return record


def table(path: Path) -> str:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| setup | seeds | epochs | test AUC task0 | test AUC task1 | test AUC mean | command s (median) | fit s (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for setup, label in (("local", "1 process"), ("ray", "Ray Train, 2 workers (gloo)")):
        rs = [r for r in records if r["setup"] == setup]
        if not rs:
            continue

        def stat(key: str) -> str:
            xs = [r["test_auc"][key] for r in rs]
            return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"

        lines.append(f"| {label} | {', '.join(str(r['seed']) for r in rs)} | {'/'.join(str(r['epochs_run']) for r in rs)} | "
                     f"{stat('task0/auc')} | {stat('task1/auc')} | {stat('auc_mean')} | "
                     f"{statistics.median(r['command_seconds'] for r in rs):.0f} | {statistics.median(r['fit_seconds'] for r in rs):.0f} |")
    for r in records:
        if r["setup"] == "startup":
            lines.append(f"\nRay start-up: ray.init {r['ray_init_seconds']} s; 2 workers, empty function {r['trainer_noop_seconds']} s; "
                         f"2 workers importing the library {r['trainer_import_seconds']} s (load {r['load']})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setup", choices=["local", "ray", "startup"])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "synthetic_mmoe.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--set", action="append", default=[], help="extra overrides for both setups")
    ap.add_argument("--out", type=Path, help="append one JSON record per line here")
    ap.add_argument("--table", type=Path, help="print the markdown table of this file's records and exit")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.setup is None:
        ap.error("--setup or --table is required")
    records = [startup_record()] if args.setup == "startup" else [fit_record(args.pipeline, args.setup, s, args.set) for s in args.seeds]
    for r in records:
        print(json.dumps(r), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
