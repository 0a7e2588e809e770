"""The data-source contract: every CLI stage on a parquet_stream pipeline, held-out reads only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import BaseModel

from recsys_mtl.cli import main
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import SpecError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import CensusData, FilesData
from tests.support.census import tiny_census

ROOT = Path(__file__).resolve().parents[2]


def stream_pipeline(folder: Path, rows: int = 2000, **trainer: object) -> Path:
    """A parquet_stream pipeline with relative paths: train in 4 files of 250-row groups."""
    (folder / "data" / "train").mkdir(parents=True)
    df = generate(SyntheticConfig(rows=rows, seed=0))
    for i in range(4):
        df.slice(i * rows // 4, rows // 4).write_parquet(folder / "data" / "train" / f"part-{i}.parquet", row_group_size=250)
    generate(SyntheticConfig(rows=600, seed=1)).write_parquet(folder / "data" / "valid.parquet")
    generate(SyntheticConfig(rows=600, seed=2)).write_parquet(folder / "data" / "test.parquet")
    raw = {
        "name": "stream",
        "spec": str(ROOT / "feature_specs" / "synthetic.yaml"),
        "data": {"kind": "parquet_stream", "train": "data/train", "valid": "data/valid.parquet", "test": "data/test.parquet", "shuffle_buffer_rows": 500},
        "model": {"name": "mmoe", "params": {"num_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}},
        "trainer": {"max_epochs": 2, "batch_size": 128, "progress_bar": False, "plots": False, **trainer},  # no picture is read
        "tune": {
            "n_trials": 2, "train_fraction": 0.5, "objective": {"kind": "single", "metric": "val/auc_mean"},
            "trial_overrides": {"trainer.max_epochs": 1},
            "space": {"trainer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        },
        "runs_dir": str(folder / "runs"),
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_paths_resolve_by_type(tmp_path: Path) -> None:
    cfg, _ = load_pipeline(stream_pipeline(tmp_path))
    assert cfg.data.train == tmp_path / "data" / "train"  # type: ignore[union-attr]
    assert cfg.data.test == tmp_path / "data" / "test.parquet"  # type: ignore[union-attr]


@pytest.mark.slow
def test_every_cli_stage_on_a_stream_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = str(stream_pipeline(tmp_path))
    assert main(["validate", pipeline, "--data"]) == 0
    assert "{'train': 2000, 'valid': 600, 'test': 600}" in capsys.readouterr().out

    assert main(["fit", pipeline]) == 0
    run_dir = Path(capsys.readouterr().out.split("run folder: ")[1].split()[0])
    assert json.loads((run_dir / "metrics.json").read_text())["split_sizes"]["train"] == 2000

    assert main(["tune", pipeline]) == 0
    summary = json.loads((tmp_path / "runs" / "tune" / "stream" / "summary.json").read_text())
    assert len(summary["trials"]) == 2 and summary["refit"]

    # export and report read held-out rows only: they work with the training files gone
    shutil.move(tmp_path / "data" / "train", tmp_path / "train-hidden")
    out = tmp_path / "export"
    assert main(["export", str(run_dir), "--out", str(out), "--parity-rows", "300"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["parity"]["rows"] == 300 and meta["parity"]["max_abs_diff"] <= 1e-5
    assert meta["test_metrics"]["rows"] == 600
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "diagnostics.json").is_file()


def test_stream_validate_names_a_bad_train_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = stream_pipeline(tmp_path, rows=400)
    bad = tmp_path / "data" / "train" / "part-2.parquet"
    pl.read_parquet(bad).drop("num0").write_parquet(bad)
    assert main(["validate", str(pipeline), "--data"]) == 2
    err = capsys.readouterr().err
    assert "part-2.parquet" in err and "'num0'" in err


def test_files_source_reads_a_given_test_file_alone(tmp_path: Path) -> None:
    generate(SyntheticConfig(rows=300, seed=2)).write_parquet(tmp_path / "test.parquet")
    source = data_source(FilesData(kind="files", train=tmp_path / "absent.parquet", test=tmp_path / "test.parquet"))
    assert source.test().height == 300
    assert source.held_out_sample(50).height == 50


def test_stream_training_fraction_takes_a_seeded_share_of_row_groups(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(stream_pipeline(tmp_path))
    source = data_source(cfg.data)
    pre = source.fit_preprocessing(spec)
    full, half = source.training(pre, 128, 0), source.training(pre, 128, 0, fraction=0.5)
    assert full.rows == 2000 and half.rows == 1000
    assert source.training(pre, 128, 0, fraction=0.5).groups == half.groups


def test_an_unregistered_data_config_is_a_spec_error() -> None:
    class Other(BaseModel):
        kind: str = "other"

    with pytest.raises(SpecError, match="no data source is registered for 'other'"):
        data_source(Other())


def test_synthetic_source_passes_task_groups_to_the_generator_and_caches_per_setting(tmp_path: Path) -> None:
    def rows(*extra: str) -> pl.DataFrame:
        cfg, _ = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml",
                               [f"data.cache_dir={tmp_path}", "data.rows=400", "data.num_tasks=4", *extra])
        s = data_source(cfg.data).splits
        return pl.concat([s.train, s.valid, s.test]).drop("tags").sort(pl.all())

    grouped = rows("data.task_groups=2", "data.group_correlation=-0.9")
    plain = rows()
    assert len(list(tmp_path.glob("*.parquet"))) == 2  # one cache file per generator setting
    expected = generate(SyntheticConfig(rows=400, num_tasks=4, task_groups=2, group_correlation=-0.9)).drop("tags").sort(pl.all())
    assert grouped.equals(expected)
    assert not grouped.equals(plain)


def test_synthetic_task_groups_beyond_tasks_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"data.*task_groups \(3\) must not exceed num_tasks \(2\)"):
        load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [f"data.cache_dir={tmp_path}", "data.task_groups=3"])


def test_census_source_reads_through_its_cache_dir(tmp_path: Path) -> None:
    folder = tiny_census(tmp_path / "census", train_rows=40, test_rows=20)
    assert CensusData(kind="census_kdd", path=folder).cache_dir == Path("data_cache")  # cached by default
    cached = data_source(CensusData(kind="census_kdd", path=folder, cache_dir=tmp_path / "cache"))
    plain = data_source(CensusData(kind="census_kdd", path=folder, cache_dir=None))
    assert cached.sizes() == plain.sizes() == {"train": 40, "valid": 10, "test": 10}
    for split in ("train", "valid", "test"):
        assert getattr(cached.splits, split).equals(getattr(plain.splits, split))
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 2  # train and test file; none without a cache_dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "census"]
