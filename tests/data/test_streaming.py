"""Streaming Parquet training data: exactly-once sharding, buffer shuffle, streaming fit, pipeline."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.streaming import ParquetStream, StreamLoader, parquet_files
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import DataError
from recsys_mtl.spec import FeatureSpec, load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.synthetic import synthetic_spec

ROWS, FILES, GROUP = 2400, 3, 200  # 12 row groups


def id_spec() -> FeatureSpec:
    """The synthetic spec plus ``rid``, a raw row id in the numeric matrix (to track rows)."""
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["features"].append({"name": "rid", "kind": "numeric", "standardize": False})
    return FeatureSpec.model_validate(raw)


def write_files(folder: Path, rows: int = ROWS, files: int = FILES, seed: int = 0) -> pl.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    df = generate(SyntheticConfig(rows=rows, seed=seed)).with_row_index("rid").with_columns(pl.col("rid").cast(pl.Float64))
    per = rows // files
    for i in range(files):
        df.slice(i * per, per).write_parquet(folder / f"part-{i:03d}.parquet", row_group_size=GROUP)
    return df


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("stream")
    return folder, write_files(folder)


@pytest.fixture(scope="module")
def stream_pre(stream_dir: tuple[Path, pl.DataFrame]) -> Preprocessor:
    return Preprocessor.fit(id_spec(), stream_dir[1])


def row_ids(loader: StreamLoader, pre: Preprocessor) -> list[int]:
    col = pre.layout.numeric.index("rid")
    return [int(v) for batch in loader for v in batch["numeric"][:, col].tolist()]


@pytest.mark.parametrize("world_size,workers", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_each_row_exactly_once_per_epoch_across_ranks_and_workers(
    stream_dir: tuple[Path, pl.DataFrame], stream_pre: Preprocessor, world_size: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each (rank, worker) shard iterated as the DataLoader worker would see it (worker info faked)."""
    import recsys_mtl.data.streaming as streaming

    files = parquet_files(stream_dir[0])
    col = stream_pre.layout.numeric.index("rid")
    orders = []
    for epoch in range(2):
        seen: list[int] = []
        for rank in range(world_size):
            stream = ParquetStream(files, stream_pre, batch_size=64, buffer_rows=500, seed=3, rank=rank, world_size=world_size)
            stream.set_epoch(epoch)
            for worker in range(workers):
                monkeypatch.setattr(streaming, "get_worker_info", lambda w=worker: SimpleNamespace(id=w, num_workers=workers))
                ids = [int(v) for b in stream for v in b["numeric"][:, col].tolist()]
                assert ids  # every shard gets row groups (12 groups, at most 6 shards)
                seen += ids
        assert sorted(seen) == list(range(ROWS))
        orders.append(seen)
    assert orders[0] != orders[1]  # a new deal and shuffle each epoch


@pytest.mark.slow
def test_real_dataloader_workers_read_each_row_once(stream_dir: tuple[Path, pl.DataFrame], stream_pre: Preprocessor) -> None:
    stream = ParquetStream(parquet_files(stream_dir[0]), stream_pre, batch_size=64, buffer_rows=500, seed=3, num_workers=2)
    loader = StreamLoader(stream, num_workers=2, equal_steps=False)
    for _ in range(2):  # the second epoch's workers are forked anew (from the fork server: recsys_mtl.data.streaming.worker_context)
        assert len(loader) == sum(-(-r // 64) for r in stream.shard_rows(0, 2))
        assert sorted(row_ids(loader, stream_pre)) == list(range(ROWS))


def test_buffer_mixes_row_groups(stream_dir: tuple[Path, pl.DataFrame], stream_pre: Preprocessor) -> None:
    stream = ParquetStream(parquet_files(stream_dir[0]), stream_pre, batch_size=100, buffer_rows=600, seed=0)
    first = next(iter(stream))
    col = stream_pre.layout.numeric.index("rid")
    groups = {int(v) // GROUP for v in first["numeric"][:, col].tolist()}
    assert len(groups) >= 2  # one batch holds rows of several row groups


def test_ddp_ranks_get_equal_full_batches(stream_dir: tuple[Path, pl.DataFrame], stream_pre: Preprocessor) -> None:
    files = parquet_files(stream_dir[0])
    counts = []
    for rank in range(3):  # 12 row groups over 3 ranks × 1 worker; 7 · 64 = 448 < 800 rows per rank
        stream = ParquetStream(files, stream_pre, batch_size=64, buffer_rows=256, seed=1, rank=rank, world_size=3)
        loader = stream.train_loader(rank, 3)
        sizes = [b["labels"].shape[0] for b in loader]
        assert sizes == [64] * len(loader)
        counts.append(len(sizes))
    assert len(set(counts)) == 1 and counts[0] == 800 // 64


def test_streaming_fit_equals_in_memory_fit(stream_dir: tuple[Path, pl.DataFrame]) -> None:
    folder, df = stream_dir
    spec = id_spec()
    a = Preprocessor.fit(spec, df).state()
    b = Preprocessor.fit_files(spec, parquet_files(folder)).state()
    assert a["tables"] == b["tables"]  # vocabularies, order included (min_freq, hashing, shared tags)
    assert a["numeric"].keys() == b["numeric"].keys()
    for name, fa in a["numeric"].items():
        fb = b["numeric"][name]
        for key, va in fa.items():
            vb = fb[key]
            if isinstance(va, float):
                assert math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-15), (name, key, va, vb)
            elif isinstance(va, list):
                np.testing.assert_allclose(va, vb, rtol=1e-12, atol=1e-15, err_msg=f"{name}.{key}")
            else:
                assert va == vb, (name, key)


def test_delimited_parquet_streams_like_the_list_column(
    tmp_path: Path, stream_dir: tuple[Path, pl.DataFrame], stream_pre: Preprocessor
) -> None:
    # tags stored as '|'-delimited text: the streaming fit and the row-group stream equal the list column in memory
    _, df = stream_dir
    text = df.with_columns(pl.col("tags").list.join(" | "))
    text.write_parquet(tmp_path / "part.parquet", row_group_size=GROUP)
    raw = id_spec().model_dump(mode="json", exclude_defaults=True)
    next(f for f in raw["features"] if f["name"] == "tags")["separator"] = "|"
    pre = Preprocessor.fit_files(FeatureSpec.model_validate(raw), parquet_files(tmp_path))
    assert pre.state()["tables"] == stream_pre.state()["tables"]
    loader = StreamLoader(ParquetStream(parquet_files(tmp_path), pre, batch_size=512, buffer_rows=600, seed=3))
    batches = list(loader)
    rid = np.concatenate([b["numeric"][:, pre.layout.numeric.index("rid")].numpy() for b in batches]).astype(int)
    streamed = np.concatenate([b["seq.tags"].numpy() for b in batches])[np.argsort(rid)]
    np.testing.assert_array_equal(streamed, stream_pre.transform(df).sequences["tags"].numpy())


def test_missing_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no Parquet files"):
        parquet_files(tmp_path / "nothing")


@pytest.mark.slow
def test_parquet_stream_pipeline_fits(tmp_path: Path) -> None:
    write_files(tmp_path / "train", rows=3000, files=3, seed=0)
    for split, seed in (("valid", 1), ("test", 2)):
        generate(SyntheticConfig(rows=800, seed=seed)).write_parquet(tmp_path / f"{split}.parquet")
    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "synthetic_mmoe.yaml").read_text())
    base["spec"] = str(Path(__file__).resolve().parents[2] / "feature_specs" / "synthetic.yaml")
    base["data"] = {"kind": "parquet_stream", "train": "train", "valid": "valid.parquet", "test": "test.parquet", "shuffle_buffer_rows": 1000}
    base["trainer"] = {**base.get("trainer", {}), "max_epochs": 2, "batch_size": 256, "progress_bar": False, "plots": False}
    base["runs_dir"] = str(tmp_path / "runs")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(base))
    cfg, spec = load_pipeline(tmp_path / "p.yaml")
    metrics = fit(cfg, spec).metrics
    assert metrics["split_sizes"]["train"] == 3000
    assert metrics["train_rows"] == 2 * 3000  # two epochs, every row once each
    assert metrics["test"]["task0/auc"] > 0.6
