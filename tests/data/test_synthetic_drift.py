"""Generated drift data: deterministic, time-split, long-tail ids with unseen ones at test, funnel masks."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.synthetic_drift import DriftConfig, generate, time_split
from recsys_mtl.errors import SpecError
from recsys_mtl.spec import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
SMALL = DriftConfig(rows=6000, periods=6, users=800, items=800, seed=3)


@pytest.fixture(scope="module")
def df() -> pl.DataFrame:
    return generate(SMALL)


def test_same_seed_same_frame_other_seed_other_frame(df: pl.DataFrame) -> None:
    assert generate(SMALL).equals(df)
    other = generate(DriftConfig(rows=6000, periods=6, users=800, items=800, seed=4))
    assert not other.equals(df)


def test_time_split_orders_periods(df: pl.DataFrame) -> None:
    train, valid, test = time_split(df, "period")
    assert train.height + valid.height + test.height == df.height
    assert train["period"].max() < valid["period"].min() == valid["period"].max() < test["period"].min()
    assert test["period"].unique().to_list() == [5]
    with pytest.raises(ValueError, match="time column 'when'"):
        time_split(df, "when")


def test_long_tail_ids_some_unseen_at_test(df: pl.DataFrame) -> None:
    train, _, test = time_split(df, "period")
    counts = train["user_id"].value_counts()["count"]
    # a long tail: most ids are rare while the head is far more frequent than the median id
    assert counts.max() > 20 * counts.median()
    for col in ("user_id", "item_id"):
        unseen = ~test[col].is_in(train[col].unique().implode())
        assert 0 < unseen.mean() < 0.5, col


def test_funnel_tasks_only_after_a_click(df: pl.DataFrame) -> None:
    assert df.filter(pl.col("click") == 0).select(pl.col("convert").max(), pl.col("quick").max()).row(0) == (0, 0)
    clicked = df.filter(pl.col("click") == 1)
    for col in ("click", "convert", "quick"):
        rate = (df if col == "click" else clicked)[col].mean()
        assert 0.05 < rate < 0.95, col


def test_effects_drift_over_time() -> None:
    # no drift and a drifting world differ only in the random-walk steps: the frames must differ
    still = generate(DriftConfig(rows=3000, periods=4, users=200, items=200, drift=0.0, seed=1))
    moving = generate(DriftConfig(rows=3000, periods=4, users=200, items=200, drift=1.0, seed=1))
    assert not still["click"].equals(moving["click"])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="periods"):
        DriftConfig(periods=2)
    with pytest.raises(ValueError, match="new_id_rate"):
        DriftConfig(new_id_rate=1.0)


def test_pipeline_reads_time_split_with_the_shipped_spec(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "pipelines" / "synthetic_drift_mmoe.yaml").read_text())
    raw["spec"] = str(ROOT / "feature_specs" / "synthetic_drift.yaml")
    raw["data"].update({"rows": 4000, "periods": 5, "users": 300, "items": 300, "cache_dir": str(tmp_path / "cache")})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg, spec = load_pipeline(path)
    assert spec.entities is not None and (spec.entities.user, spec.entities.item) == ("user_id", "item_id")
    source = data_source(cfg.data)
    assert source.check(spec) == {"train": 2400, "valid": 800, "test": 800}
    assert source.test()["period"].unique().to_list() == [4]
    assert len(list((tmp_path / "cache").glob("synthetic_drift_*.parquet"))) == 1  # cached
    pre = Preprocessor.fit(spec, source.splits.train)
    table = pre.transform(source.test(), "test")
    # the funnel tasks count only clicked rows
    assert (table.weights[:, 1] > 0).sum().item() == source.test()["click"].sum()


def test_pipeline_refuses_no_training_periods(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "pipelines" / "synthetic_drift_mmoe.yaml").read_text())
    raw["spec"] = str(ROOT / "feature_specs" / "synthetic_drift.yaml")
    raw["data"].update({"periods": 3, "valid_periods": 2})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="valid_periods"):
        load_pipeline(path)


def test_generate_command_writes_drift_data(tmp_path: Path) -> None:
    from recsys_mtl.cli import main

    assert main(["generate", str(tmp_path / "d.parquet"), "--drift", "--rows", "2000", "--seed", "5"]) == 0
    assert pl.read_parquet(tmp_path / "d.parquet").equals(generate(DriftConfig(rows=2000, seed=5)))


def test_cold_start_scenario_most_test_users_unseen() -> None:
    df = generate(DriftConfig(rows=6000, periods=5, users=400, items=400, scenario="cold_start", seed=2))
    assert generate(DriftConfig(rows=6000, periods=5, users=400, items=400, scenario="cold_start", seed=2)).equals(df)
    train, _, test = time_split(df, "period")
    unseen = ~test["user_id"].is_in(train["user_id"].unique().implode())
    assert unseen.mean() > 0.7
    assert set(df["rating"].unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 0.1 < df["complete"].mean() < 0.9
    with pytest.raises(ValueError, match="scenario"):
        DriftConfig(scenario="sideways")


def test_cold_start_pipeline_loads_with_its_spec(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_coldstart_mmoe.yaml")
    assert cfg.data.scenario == "cold_start"  # type: ignore[union-attr]
    assert [t.type for t in spec.tasks] == ["regression", "binary"]
    raw = yaml.safe_load((ROOT / "pipelines" / "synthetic_coldstart_mmoe.yaml").read_text())
    raw["spec"] = str(ROOT / "feature_specs" / "synthetic_coldstart.yaml")
    raw["data"].update({"rows": 3000, "users": 200, "items": 200, "cache_dir": str(tmp_path)})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    cfg, spec = load_pipeline(tmp_path / "p.yaml")
    assert data_source(cfg.data).check(spec) == {"train": 2000, "valid": 500, "test": 500}
