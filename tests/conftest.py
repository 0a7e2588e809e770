"""Shared fixtures: small synthetic data, its spec, fitted preprocessing, the census folder.

Helpers that tests import (paths, spec builders, exports, tables) live in ``tests/support``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec import FeatureSpec
from tests.support.paths import CENSUS_DIR
from tests.support.synthetic import synthetic_spec

# tests use tiny tensors and run under pytest-xdist (one worker per core): intra-op threads only
# add contention there
torch.set_num_threads(1)


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
