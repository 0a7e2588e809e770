"""Shared fixtures: small synthetic data, its spec, fitted preprocessing and model contexts."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.models import ModelContext
from recsys_mtl.spec import FeatureSpec, load_spec

# tests use tiny tensors and run under pytest-xdist (one worker per core): intra-op threads only
# add contention there
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECSYS_MTL_SHARED_DATA", ROOT.parent / "shared" / "data"))
CENSUS_DIR = SHARED_DATA / "census-income-kdd"


def synthetic_spec(num_tasks: int = 2) -> FeatureSpec:
    """The shipped synthetic spec, with ``num_tasks`` binary tasks."""
    base = load_spec(ROOT / "feature_specs" / "synthetic.yaml")
    tasks = [{"name": f"task{k}", "label": f"label{k}", "type": "binary"} for k in range(num_tasks)]
    raw = base.model_dump(mode="json", exclude_defaults=True)
    raw["tasks"] = tasks
    raw["ignore"] = [f"y{k}" for k in range(num_tasks)]
    return FeatureSpec.model_validate(raw)


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


def make_context(num_tasks: int, rows: int = 600, seed: int = 0) -> tuple[ModelContext, EncodedTable]:
    """A model context and encoded table with ``num_tasks`` binary tasks."""
    spec = synthetic_spec(num_tasks)
    df = generate(SyntheticConfig(rows=rows, num_tasks=num_tasks, seed=seed))
    pre = Preprocessor.fit(spec, df)
    return ModelContext(layout=pre.layout, tasks=spec.tasks), pre.transform(df)


@pytest.fixture
def census_dir() -> Path:
    if not (CENSUS_DIR / "census-income.data.bz2").exists():
        pytest.skip(f"census-income data not found at {CENSUS_DIR} (set RECSYS_MTL_SHARED_DATA)")
    return CENSUS_DIR
