"""The ``synthetic_sequences`` data kind: the sequence generator from a pipeline file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
from recsys_mtl.errors import SpecError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.rl import check_rl
from tests.support.paths import ROOT

ARMS = ("mmoe", "rmtl", "dtrn", "dtrn_interest")


@pytest.mark.parametrize("arm", ARMS)
def test_sequence_pipelines_load_and_split(tmp_path: Path, arm: str) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / f"synthetic_sequences_{arm}.yaml", ["data.rows=400", f"data.cache_dir={tmp_path}"])
    splits = load_splits(cfg.data)
    assert splits.sizes() == {"train": 280, "valid": 60, "test": 60}
    # the generator's table, split at random: the same rows, none twice
    whole = generate_sequences(SequenceDataConfig(rows=400, seed=0))
    both = pl.concat([splits.train, splits.valid, splits.test])
    assert both.height == 400 and sorted(both["item_id"].to_list()) == sorted(whole["item_id"].to_list())
    assert both.schema["history"] == pl.List(pl.String)
    if cfg.rl is not None:  # RMTL: the sessions are the spec's group_by column
        check_rl(cfg.rl.name, cfg.rl.params, spec.tasks)


def test_sequence_data_is_cached_per_setting(tmp_path: Path) -> None:
    pipe = ROOT / "pipelines" / "synthetic_sequences_mmoe.yaml"
    a = load_splits(load_pipeline(pipe, ["data.rows=300", f"data.cache_dir={tmp_path}"])[0].data)
    b = load_splits(load_pipeline(pipe, ["data.rows=300", f"data.cache_dir={tmp_path}"])[0].data)
    c = load_splits(load_pipeline(pipe, ["data.rows=300", "data.seed=1", f"data.cache_dir={tmp_path}"])[0].data)
    assert a.train.equals(b.train) and not a.train.equals(c.train)
    assert len(list(tmp_path.glob("synthetic_sequences_*.parquet"))) == 2


def test_rmtl_needs_its_session_column_in_the_sequence_spec() -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_sequences_rmtl.yaml", ["rl.params.session_column=hour"])
    assert cfg.rl is not None
    with pytest.raises(SpecError, match="session_column"):
        check_rl(cfg.rl.name, cfg.rl.params, spec.tasks)
