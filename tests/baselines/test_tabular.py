"""Tree baselines on specs the trees cannot fully see: grouped AUC by the task's own grouping
column, and sequence features left out by name (recorded and warned), not silently."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recsys_mtl.baselines.tabular import TreeColumns, evaluate
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec.features import Task

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_computes_gauc_by_each_tasks_grouping_column() -> None:
    tasks = [Task(name="a", label="a", group_by="u"), Task(name="b", label="b", group_by="v")]
    labels = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    # groups columns follow group_columns(tasks): u (one group), v (two groups)
    groups = torch.tensor([[1, 1], [1, 1], [1, 2], [1, 2]])
    table = EncodedTable(torch.zeros(4, 0, dtype=torch.long), torch.zeros(4, 0), {}, labels, torch.ones(4, 2), groups)
    logits = np.log(np.array([0.5, 0.9, 0.1, 0.2]) / (1 - np.array([0.5, 0.9, 0.1, 0.2])))
    out = evaluate(tasks, {"a": logits, "b": logits}, table)
    # one group: 3 of the 4 positive/negative pairs are ordered right; by v each group is perfect
    assert out["a/auc"] == pytest.approx(0.75) and out["a/gauc"] == pytest.approx(0.75)
    assert out["b/auc"] == pytest.approx(0.75) and out["b/gauc"] == pytest.approx(1.0)


def test_tree_columns_name_the_sequence_features_they_leave_out() -> None:
    layout = Layout(categorical=[("item_id", "items")], numeric=["hour"], sequences=[("history", "items", 30, "mean")])
    columns = TreeColumns.of(layout)
    assert columns.names == ["item_id", "hour"] and columns.categorical == [0]
    assert columns.dropped == ("history",)
    assert TreeColumns.of(Layout(categorical=[("item_id", "items")])).dropped == ()


def test_lightgbm_baseline_on_a_sequence_spec_reports_the_dropped_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("lightgbm")
    from recsys_mtl.baselines import baselines_config, run_baselines
    from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
    from recsys_mtl.spec import load_pipeline

    generate_sequences(SequenceDataConfig(rows=800, users=60, items=30, seed=0)).write_parquet(tmp_path / "seq.parquet")
    pipeline = {
        "name": "seq", "spec": str(ROOT / "feature_specs" / "sequence_synthetic.yaml"),
        "data": {"kind": "files", "train": str(tmp_path / "seq.parquet"), "valid_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "mmoe", "params": {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}},
        "trainer": {"max_epochs": 1, "batch_size": 256, "progress_bar": False}, "runs_dir": str(tmp_path / "runs"),
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(pipeline))
    cfg, spec = load_pipeline(tmp_path / "p.yaml", [])
    bcfg = baselines_config({"single_task": False, "lightgbm_params": {"num_leaves": 7, "num_threads": 1}})
    with caplog.at_level(logging.WARNING, logger="recsys_mtl.baselines.runner"):
        report = run_baselines(cfg, spec, bcfg, tmp_path / "out")
    assert "history" in caplog.text
    saved = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert saved["tree_features_dropped"] == ["history"] and "history" not in saved["tree_features"]
    # grouped AUC (spec group_by: user_id) is scored for the trees as for the network
    (by_seed,) = saved["results"]["lightgbm"].values()
    assert set(by_seed["test"]) >= {"click/auc", "click/gauc", "like/gauc"}
    assert "left out the sequence features history" in report.table
    assert "left out the sequence features history" in (tmp_path / "out" / "baselines.md").read_text()
