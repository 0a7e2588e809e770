"""Training curves: per-epoch series from the CSV log, one PNG per run."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recsys_mtl.train.curves import curve_series, plot_curves


def _write_log(run: Path) -> None:
    (run / "logs").mkdir(parents=True)
    rows = [
        # step-level train losses (two per epoch), epoch-level validation metrics, a weight column
        {"epoch": 0, "step": 0, "train/a/loss": 1.0, "val/a/auc": None, "val/loss": None, "balance/a/weight": 1.0},
        {"epoch": 0, "step": 1, "train/a/loss": 0.8, "val/a/auc": None, "val/loss": None, "balance/a/weight": 1.0},
        {"epoch": 0, "step": 1, "train/a/loss": None, "val/a/auc": 0.7, "val/loss": 0.9, "balance/a/weight": None},
        {"epoch": 1, "step": 2, "train/a/loss": 0.6, "val/a/auc": None, "val/loss": None, "balance/a/weight": 1.0},
        {"epoch": 1, "step": 3, "train/a/loss": 0.4, "val/a/auc": None, "val/loss": None, "balance/a/weight": 1.0},
        {"epoch": 1, "step": 3, "train/a/loss": None, "val/a/auc": 0.8, "val/loss": 0.7, "balance/a/weight": None},
    ]
    pl.DataFrame(rows).write_csv(run / "logs" / "metrics.csv")


def test_series_are_per_epoch_and_skip_other_columns(tmp_path: Path) -> None:
    _write_log(tmp_path)
    series = curve_series(tmp_path / "logs" / "metrics.csv")
    assert set(series) == {"loss", "auc"}  # balancing weights are not curves
    x, y = series["loss"]["train/a/loss"]
    assert x == [0, 1] and y == pytest.approx([0.9, 0.5])  # step losses averaged per epoch
    assert series["loss"]["val/loss"][1] == pytest.approx([0.9, 0.7])
    assert series["auc"]["val/a/auc"][1] == pytest.approx([0.7, 0.8])
    assert curve_series(tmp_path / "logs" / "metrics.csv", last_epoch=0)["auc"]["val/a/auc"][0] == [0]


def test_plot_written_into_run_folder(tmp_path: Path) -> None:
    assert plot_curves(tmp_path) is None  # no log yet: nothing to draw, no error
    _write_log(tmp_path)
    path = plot_curves(tmp_path)
    assert path == tmp_path / "curves.png" and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_with_the_garbage_collector_paused_and_restores_it(tmp_path: Path) -> None:
    """A figure's cyclic garbage stays young (``young_garbage``): no collection runs while it is drawn,
    so none promotes it to the generation only a full collection of the process frees."""
    _write_log(tmp_path)
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        plot_curves(tmp_path)
    finally:
        gc.callbacks.remove(seen)
    assert collections == [] and gc.isenabled()
    gc.disable()
    try:
        plot_curves(tmp_path, tmp_path / "again.png")
        assert not gc.isenabled()  # a caller that paused the collector finds it paused
    finally:
        gc.enable()
