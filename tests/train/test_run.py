"""Fitting a pipeline into a run folder: beats a constant predictor, selects on validation, tests once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.artifacts import checkpoint_epoch
from recsys_mtl.errors import SpecError
from recsys_mtl.spec import FeatureSpec, PipelineConfig
from recsys_mtl.train.callbacks import RunCheckpoint
from recsys_mtl.train.fit import FitResult, fit
from tests.support.pipelines import small_pipeline

ROOT = Path(__file__).resolve().parents[2]


def constant_logloss(rate: float) -> float:
    return -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))


@pytest.fixture(scope="module")
def four_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, FeatureSpec, FitResult]:
    """(cfg, spec, result) of one 4-epoch fit of small_pipeline, shared by the tests that only read it."""
    cfg, spec = small_pipeline(tmp_path_factory.mktemp("four_epochs"))
    return cfg, spec, fit(cfg, spec)


@pytest.mark.slow
def test_fit_beats_constant_and_writes_run_folder(four_epochs: tuple[PipelineConfig, FeatureSpec, FitResult]) -> None:
    run = four_epochs[2].run_dir
    for name in ("pipeline.yaml", "spec.yaml", "preprocessing.json", "metrics.json", "curves.png", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).exists(), name
    m = json.loads((run / "metrics.json").read_text())
    for task in ("task0", "task1"):
        assert m["test"][f"{task}/auc"] > 0.75
        # positive rate of the generator is 0.3: a constant predictor's log loss
        assert m["test"][f"{task}/logloss"] < constant_logloss(0.3) - 0.1
    assert m["split_sizes"] == {"train": 2800, "valid": 600, "test": 600}
    assert m["train_rows_per_sec"] > 0 and m["peak_rss_mib"] > 0


def test_checkpoint_is_selected_on_validation_and_test_runs_once(four_epochs: tuple[PipelineConfig, FeatureSpec, FitResult]) -> None:
    result = four_epochs[2]
    logs = pl.read_csv(result.run_dir / "logs" / "metrics.csv")
    val = logs.filter(pl.col("val/auc_mean").is_not_null() & pl.col("epoch").is_not_null())
    per_epoch = val.group_by("epoch").agg(pl.col("val/auc_mean").first()).sort("epoch")
    best_epoch = per_epoch.sort("val/auc_mean", descending=True)["epoch"][0]
    assert result.metrics["best_epoch"] == best_epoch == checkpoint_epoch(result.run_dir / result.metrics["best_checkpoint"])
    assert result.metrics["val"]["auc_mean"] == pytest.approx(per_epoch["val/auc_mean"].max(), abs=1e-5)
    assert logs["test/auc_mean"].drop_nulls().len() == 1  # the test split is read exactly once


@pytest.mark.slow
def test_same_seed_same_metrics(four_epochs: tuple[PipelineConfig, FeatureSpec, FitResult]) -> None:
    cfg, spec, a = four_epochs
    # a new folder next to the shared fit's, which the other tests do not list; without the pictures,
    # which change nothing else
    b = fit(cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"plots": False})}), spec)
    assert a.metrics["test"] == b.metrics["test"] and a.metrics["best_epoch"] == b.metrics["best_epoch"]
    assert a.run_dir != b.run_dir
    pictures = {"curves.png", "reliability.png", "diagnostics.png"}
    assert {p.name for p in a.run_dir.iterdir()} ^ {p.name for p in b.run_dir.iterdir()} == pictures
    assert not any(b.run_dir.glob("*.png"))


def test_bad_model_params_write_nothing(tmp_path: Path) -> None:
    cfg, spec = small_pipeline(tmp_path, "model.params.num_experts=-1")
    with pytest.raises(SpecError, match="model.params.num_experts"):
        fit(cfg, spec)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_resume_from_last_checkpoint(tmp_path: Path) -> None:
    cfg, spec = small_pipeline(tmp_path, "trainer.max_epochs=1", "trainer.plots=false")
    first = fit(cfg, spec)
    cfg2, _ = small_pipeline(tmp_path, "trainer.max_epochs=2", "trainer.plots=false")
    resumed = fit(cfg2, spec, resume=first.run_dir)
    assert resumed.run_dir == first.run_dir
    assert resumed.metrics["epochs_run"] == 2
    assert resumed.metrics["train_rows"] == 2800  # only the second epoch was trained
    assert resumed.metrics["best_epoch"] == checkpoint_epoch(resumed.run_dir / resumed.metrics["best_checkpoint"])


def test_best_epoch_of_a_checkpoint_an_earlier_process_wrote_is_read_from_the_file(tmp_path: Path) -> None:
    """A resumed run's best may predate this process: RunCheckpoint then reads its epoch from the file."""
    torch.save({"epoch": 3, "state_dict": {"w": torch.zeros(1)}}, tmp_path / "best.ckpt")
    assert RunCheckpoint(dirpath=tmp_path).epoch_of(str(tmp_path / "best.ckpt")) == 3


@pytest.mark.slow
def test_limit_train_batches_caps_each_epoch(tmp_path: Path) -> None:
    cfg, spec = small_pipeline(tmp_path, "trainer.limit_train_batches=2", "trainer.batch_size=64", "trainer.max_epochs=1", "trainer.plots=false")
    m = fit(cfg, spec).metrics
    assert m["train_rows"] == 2 * 64  # two batches, not the whole train split
    assert "auc" in json.dumps(m["test"])  # validation and test still run on full splits
