"""fit --init-from: known ids keep their rows, new ids get fresh rows, drift is reported."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from recsys_mtl.cli import main
from recsys_mtl.features.fitted import FIRST
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.incremental import carry_weights, start_from
from recsys_mtl.train.fit import build_module, prepare
from recsys_mtl.train.run_folder import load_run

ROOT = Path(__file__).resolve().parents[2]
NEW_IDS = [f"new_{k}" for k in range(5)]


def write_data(folder: Path, seed: int, new_ids: bool) -> Path:
    folder.mkdir(parents=True)
    for split, rows, s in (("train", 1500, seed), ("valid", 500, seed + 1), ("test", 500, seed + 2)):
        df = generate(SyntheticConfig(rows=rows, seed=s))
        if new_ids:  # a third of cat0 becomes ids the earlier run never saw
            ids = pl.Series([NEW_IDS[i % 5] if i % 3 == 0 else None for i in range(rows)])
            df = df.with_columns(pl.coalesce(ids, pl.col("cat0").cast(pl.String)).alias("cat0"))
        df.write_parquet(folder / f"{split}.parquet")
    raw = {
        "name": folder.name, "spec": str(ROOT / "feature_specs" / "synthetic.yaml"),
        "data": {"kind": "files", "train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet"},
        "model": {"name": "mmoe", "params": {"num_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}},
        "trainer": {"max_epochs": 1, "batch_size": 256, "progress_bar": False, "plots": False, "seed": 7},
        "runs_dir": str(folder.parent / "runs"),
    }
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    return folder / "pipeline.yaml"


@pytest.mark.slow
def test_init_from_keeps_known_rows_and_gives_new_ids_fresh_rows(tmp_path: Path, capsys) -> None:
    first = write_data(tmp_path / "a", seed=0, new_ids=False)
    assert main(["fit", str(first)]) == 0
    earlier_dir = Path(capsys.readouterr().out.split("run folder: ")[1].split()[0])
    earlier = load_run(earlier_dir)
    second = write_data(tmp_path / "b", seed=10, new_ids=True)

    cfg, spec = load_pipeline(second)
    source = data_source(cfg.data)
    start = start_from(earlier_dir, spec, source)
    module = build_module(prepare(cfg, spec, preprocessor=start.preprocessor, source=source))
    fresh = {k: v.clone() for k, v in module.model.state_dict().items()}
    carry_weights(module.model, start.model)

    old_vocab, new_vocab = earlier.preprocessor.tables["cat0"].vocab, start.preprocessor.tables["cat0"].vocab
    assert new_vocab[: len(old_vocab)] == old_vocab and sorted(new_vocab[len(old_vocab):]) == NEW_IDS
    key = "encoder.embeddings.tables.cat0.weight"
    old_w, new_w = earlier.model.state_dict()[key], module.model.state_dict()[key]
    for v in old_vocab:  # known ids: the earlier run's rows, at the same index
        torch.testing.assert_close(new_w[FIRST + old_vocab.index(v)], old_w[FIRST + old_vocab.index(v)])
    torch.testing.assert_close(new_w[:FIRST], old_w[:FIRST])  # missing / OOV rows too
    for v in NEW_IDS:  # new ids: the fresh initialisation, not a copy of an earlier row
        row = new_w[FIRST + new_vocab.index(v)]
        torch.testing.assert_close(row, fresh[key][FIRST + new_vocab.index(v)])
        assert not any(torch.equal(row, r) for r in old_w)
    for name, value in earlier.model.state_dict().items():  # every other weight carried over
        if name != key:
            torch.testing.assert_close(module.model.state_dict()[name], value)

    assert main(["fit", str(second), "--init-from", str(earlier_dir)]) == 0
    run_dir = Path(capsys.readouterr().out.split("run folder: ")[1].split()[0])
    drift = json.loads((run_dir / "drift.json").read_text())
    assert drift["vocabularies"]["cat0"]["added"] == 5 and drift["new_rows"] == {"encoder.embeddings.tables.cat0": 5}
    assert drift["vocabularies"]["cat1"]["added"] == 0
    oov = drift["oov_rate_new_validation"]["cat0"]
    assert 0.3 < oov["earlier_vocab"] < 0.37 and oov["grown_vocab"] == 0
    assert set(drift["numeric_earlier_vs_new"]) == {f"num{i}" for i in range(6)}
    assert json.loads((run_dir / "preprocessing.json").read_text())["tables"]["cat0"]["vocab"] == new_vocab
