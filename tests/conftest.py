"""Shared fixtures: small synthetic data, its spec, fitted preprocessing, the census folder.

Helpers that tests import (paths, spec builders, exports, tables) live in ``tests/support``.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Iterator

import polars as pl
import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec import FeatureSpec
from tests.support.paths import CENSUS_DIR, ROOT
from tests.support.synthetic import synthetic_spec

# tests use tiny tensors and run under pytest-xdist (one worker per core): intra-op threads only
# add contention there
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _imports_frozen_for_gc() -> Iterator[None]:
    """What the process holds once every test is collected (torch, Lightning, the test modules: ~600k
    objects) is moved out of the cyclic garbage collector's reach (``gc.freeze``). A full collection
    then walks only what tests made since, not the whole process: in the tune and CLI test files it
    had taken a quarter of their CPU. Objects the tests make are collected as before."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def synth_df() -> pl.DataFrame:
    return generate(SyntheticConfig(rows=3000, num_tasks=2, seed=1))


@pytest.fixture(scope="session")
def spec2() -> FeatureSpec:
    return synthetic_spec(2)


@pytest.fixture(scope="session")
def fitted(spec2: FeatureSpec, synth_df: pl.DataFrame) -> tuple[Preprocessor, EncodedTable]:
    pre = Preprocessor.fit(spec2, synth_df)
    return pre, pre.transform(synth_df)


@pytest.fixture
def census_dir() -> Path:
    if not (CENSUS_DIR / "census-income.data.bz2").exists():
        pytest.skip(f"census-income data not found at {CENSUS_DIR} (set RECSYS_MTL_SHARED_DATA)")
    return CENSUS_DIR


@pytest.fixture(scope="session")
def local_ray() -> Iterator[object]:
    """One local Ray instance (2 logical CPUs) per pytest process, shared by every Ray test: its start-up
    (GCS, raylet, agents) is seconds of wall time on 2 cores. Its workers find this checkout's modules
    (tests and callbacks defined in them are unpickled there) through PYTHONPATH."""
    import ray

    # Ray Train settings for short fits, read by the driver and passed on to Ray Train's controller and
    # workers: the controller polls its workers every 0.5 s instead of 2 s (a finished or killed worker is
    # seen sooner; at 0.2 s the polls were ~2.5 CPU s of a fit's controller and workers), and starts no
    # preemption watcher or metrics callbacks (a local instance is never drained)
    settings = {"RAY_TRAIN_V2_ENABLED": "1", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
                "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                # Ray Data asks for 32 parquet footer-reader actors per read (a process each on a local
                # instance, ~1 CPU s), though it sends every batch of up to 10 files to the first: one
                # reads the same footers
                "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings.items():
            mp.setenv(key, value)
        with pytest.MonkeyPatch.context() as at_start:  # the raylet, and so every Ray worker, inherits it
            at_start.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
            # no idle workers started ahead: Ray Train's actors (a runtime env of their own) never use them,
            # and Ray Data's tasks start theirs when needed; no metrics exported by every Ray process (no
            # dashboard reads them here)
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False,
                                     "enable_metrics_collection": False})
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def restore_lightning_log_levels() -> Iterator[None]:
    """For tests that call the CLI's ``main()`` in process: it quiets Lightning's info loggers for the
    process; put them back for the other tests."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels):
        lg.setLevel(level)
