"""``score --engine ray`` on a local Ray instance (2 CPUs): Ray Data reads, an actor pool of
onnxruntime sessions scores, Ray Data writes; the scores are the local engine's. The Ray instance is the
conftest's ``local_ray`` (one per pytest process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from serving.batch_score import BatchScoreError, score
from tests.support.export import export_dir, held_out  # noqa: F401  (fixture)

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recsys-mtl[ray]')")

from serving.ray_score import score_ray  # noqa: E402


@pytest.mark.slow
def test_ray_scores_equal_local_scores(tmp_path: Path, export_dir: Path, local_ray: object) -> None:  # noqa: F811
    df = held_out(900, seed=11).with_row_index("row_id")
    (tmp_path / "in").mkdir()
    df[:500].write_parquet(tmp_path / "in" / "a.parquet", row_group_size=100)
    df[500:].write_parquet(tmp_path / "in" / "b.parquet", row_group_size=100)
    local = score(export_dir, [str(tmp_path / "in")], tmp_path / "local.parquet", keep=["row_id"], progress=False)
    result = score_ray(export_dir, [str(tmp_path / "in")], tmp_path / "ray_out", keep=["row_id"], workers=2,
                       batch_rows=128, cpus_per_worker=0.5)  # 2 CPUs: one for the actors, one for read / write
    assert result.rows == local.rows == 900
    got = pl.read_parquet(tmp_path / "ray_out").sort("row_id")
    want = pl.read_parquet(tmp_path / "local.parquet")
    assert got["row_id"].to_list() == want["row_id"].to_list()
    for t in ("task0", "task1"):
        assert np.abs(got[t].to_numpy() - want[t].to_numpy()).max() <= 1e-6
    assert not list(tmp_path.glob(".ray_out*"))


@pytest.mark.slow
def test_ray_refuses_a_bad_value_naming_the_file(tmp_path: Path, export_dir: Path, local_ray: object) -> None:  # noqa: F811
    df = held_out(200, seed=12).with_columns(num0=pl.when(pl.int_range(pl.len()) == 150).then(float("inf")).otherwise(pl.col("num0")))
    df.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(BatchScoreError, match=r"bad.parquet, row \d+: column 'num0': infinite"):
        score_ray(export_dir, [str(tmp_path / "bad.parquet")], tmp_path / "out", workers=1, cpus_per_worker=0.5)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
