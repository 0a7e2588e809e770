"""Validation every N training batches: early stopping and checkpoint selection inside an epoch."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mid_epoch_selection_picks_the_best_validation_step(tmp_path: Path) -> None:
    # a high learning rate: validation AUC rises, peaks inside the second epoch, then wobbles
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", f"runs_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=3", "trainer.batch_size=64", "trainer.progress_bar=false", "trainer.plots=false", "trainer.patience=50",
        "trainer.val_check_interval=5", "trainer.lr=0.1",
    ])
    result = fit(cfg, spec)
    log = pl.read_csv(result.run_dir / "logs" / "metrics.csv").filter(pl.col("val/auc_mean").is_not_null())
    during = log.head(log.height - 1)  # the last row: the selected checkpoint validated again after fit
    steps_per_epoch = -(-result.metrics["split_sizes"]["train"] // 64)
    # every 5 batches, counted across epochs (logged at the step before the counter moves on)
    assert during["step"].to_list() == list(range(4, 3 * steps_per_epoch, 5))
    best = during.sort(["val/auc_mean", "step"], descending=[True, False]).row(0, named=True)
    ckpt = torch.load(result.run_dir / result.metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == best["step"] + 1  # the checkpoint of the best validation step ...
    assert ckpt["global_step"] % steps_per_epoch != 0  # ... which is inside an epoch ...
    assert result.metrics["best_epoch"] == ckpt["epoch"]
    assert best["step"] < during["step"].max()  # ... and not the last one
    assert result.metrics["monitor"]["best"] == pytest.approx(best["val/auc_mean"], abs=1e-6)
    assert result.metrics["val"]["auc_mean"] == pytest.approx(best["val/auc_mean"], abs=1e-5)  # its weights
