"""Validation every N training batches: early stopping and checkpoint selection inside an epoch."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[1]


def test_mid_epoch_selection_picks_the_best_validation_step(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", f"runs_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=2", "trainer.batch_size=64", "trainer.progress_bar=false", "trainer.patience=50",
        "trainer.val_check_interval=4", "trainer.lr=0.01",
    ])
    result = fit(cfg, spec)
    log = pl.read_csv(result.run_dir / "logs" / "metrics.csv").filter(pl.col("val/auc_mean").is_not_null())
    steps_per_epoch = -(-result.metrics["split_sizes"]["train"] // 64)
    # validated every 4 batches, not once per epoch (the selection run after fit adds one more row)
    assert log.height - 1 >= 2 * steps_per_epoch // 4 - 1
    during = log.head(log.height - 1)
    assert (during["step"] % 4 == 3).all() or (during["step"] % 4 == 0).all()  # every 4 batches
    best = during.sort(["val/auc_mean", "step"], descending=[True, False]).row(0, named=True)
    ckpt = torch.load(result.run_dir / result.metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == best["step"] + 1 or ckpt["global_step"] == best["step"]
    assert result.metrics["monitor"]["best"] == pytest.approx(best["val/auc_mean"], abs=1e-6)
    # the selected weights are re-validated after training: the same score
    assert result.metrics["val"]["auc_mean"] == pytest.approx(best["val/auc_mean"], abs=1e-5)
