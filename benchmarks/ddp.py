"""One process vs Lightning DDP on two CPU processes (gloo): same pipeline, same seeds.

    python benchmarks/ddp.py --seeds 42 43

Runs ``recsys-mtl fit`` on pipelines/synthetic_mmoe.yaml (or ``--pipeline``), alternating one
process and ``trainer.strategy=ddp trainer.devices=2 trainer.accelerator=cpu`` per seed, and
prints the test AUC per task, the epochs run and the train rows/s of each fit (rank 0's rows
only under DDP). Each DDP process trains on half of every epoch with half the pipeline's batch
size, so the global batch and the number of optimizer steps match the single process: metrics
should agree within seed noise, not bit for bit (with the same per-process batch, DDP takes
half the steps per epoch and, on small data, ends undertrained).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DDP = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.deterministic=false"]


def run(pipeline: Path, overrides: list[str], runs_dir: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "recsys_mtl.cli", "fit", str(pipeline), "--runs-dir", str(runs_dir)]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"fit failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    (run_dir,) = runs_dir.iterdir()
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "synthetic_mmoe.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--set", action="append", default=[], help="extra overrides for both")
    args = ap.parse_args()
    from recsys_mtl.spec import load_pipeline

    cfg, _ = load_pipeline(args.pipeline, args.set)
    ddp = [*DDP, f"trainer.batch_size={max(cfg.trainer.batch_size // 2, 1)}"]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for label, extra in (("1 process", []), ("ddp 2 processes", ddp)):
                runs = Path(tmp) / f"{seed}-{len(extra)}"
                over = [*args.set, f"trainer.seed={seed}", "trainer.progress_bar=false", *extra]
                m = run(args.pipeline, over, runs)
                test = m["test"]  # type: ignore[index]
                print(json.dumps({
                    "setup": label, "seed": seed, "epochs_run": m["epochs_run"],
                    "test_auc": {k: v for k, v in test.items() if k.endswith("auc") or k == "auc_mean"},  # type: ignore[union-attr]
                    "train_rows_per_sec": m["train_rows_per_sec"],
                }), flush=True)


if __name__ == "__main__":
    main()
