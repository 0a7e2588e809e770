"""Short fits of the shipped synthetic pipeline, shared by the train and balancing tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_mtl.spec import FeatureSpec, PipelineConfig, load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.balancer_table import SHORT_FIT
from tests.support.paths import ROOT


def small_pipeline(tmp_path: Path, *extra: str) -> tuple[PipelineConfig, FeatureSpec]:
    """pipelines/synthetic_mmoe.yaml on 4,000 rows for 4 epochs, writing under ``tmp_path``."""
    overrides = [
        "data.rows=4000",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=4",
        "trainer.batch_size=256",
        "trainer.progress_bar=false",
        f"runs_dir={tmp_path / 'runs'}",
        *extra,
    ]
    return load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", overrides)


def short_fit(tmp_path: Path, method: str, *extra: str) -> tuple[dict, pl.DataFrame]:  # type: ignore[type-arg]
    """A 2-epoch fit on 800 rows balanced by ``method`` (its SHORT_FIT row), without the run folder's
    pictures: (metrics, logged metrics.csv)."""
    cfg, spec = load_pipeline(
        ROOT / "pipelines" / "synthetic_mmoe.yaml",
        [
            "data.rows=800",
            f"data.cache_dir={tmp_path / 'cache'}",
            "trainer.max_epochs=2",
            "trainer.patience=5",
            "trainer.batch_size=128",
            "trainer.progress_bar=false",
            "trainer.plots=false",  # no test of a balancing method reads the pictures (tests/train/test_run.py does)
            "trainer.log_every_n_steps=2",
            f"runs_dir={tmp_path / 'runs'}",
            f"balancing.name={method}",
            *SHORT_FIT[method],
            *extra,
        ],
    )
    result = fit(cfg, spec)
    return result.metrics, pl.read_csv(result.run_dir / "logs" / "metrics.csv")
