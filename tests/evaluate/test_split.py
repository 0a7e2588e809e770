"""``recsys-mtl split RUN``: a run's held-out split rebuilt from its pipeline.yaml, as the fit split it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from recsys_mtl.cli import main
from recsys_mtl.data.sources import data_source
from recsys_mtl.errors import DataError
from recsys_mtl.evaluate.split import write_split
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.run_folder import applied_pipeline

ROOT = Path(__file__).resolve().parents[2]


def _run_folder(tmp_path: Path) -> tuple[Path, object]:
    cfg, _ = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml",
                           ["data.rows=1000", f"data.cache_dir={tmp_path / 'cache'}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.yaml").write_text(yaml.safe_dump(applied_pipeline(cfg), sort_keys=False))
    return run, cfg


def test_split_written_equals_the_fits_split(tmp_path: Path) -> None:
    run, cfg = _run_folder(tmp_path)
    source = data_source(cfg.data)  # type: ignore[attr-defined]
    for split, want in (("test", source.test()), ("valid", source.valid())):
        out, rows = write_split(run, split, tmp_path / f"{split}.parquet")
        got = pl.read_parquet(out)
        assert rows == want.height > 0
        assert got.equals(want)
    assert not list(tmp_path.glob(".*partial"))


def test_split_cli_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = _run_folder(tmp_path)
    out = tmp_path / "t.parquet"
    assert main(["split", str(run), "--out", str(out)]) == 0
    assert "test split" in capsys.readouterr().out and out.is_file()
    with pytest.raises(DataError, match="already exists"):
        write_split(run, "test", out)
    with pytest.raises(DataError, match="pipeline.yaml is missing"):
        write_split(tmp_path, "test", tmp_path / "x.parquet")
    with pytest.raises(DataError, match="split must be one of"):
        write_split(run, "train", tmp_path / "x.parquet")
