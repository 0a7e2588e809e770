"""Task-sparse export: same scores as the full graph for the chosen tasks, fewer nodes and weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from recsys_mtl.cli import main
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.export.model_graph import ScoringHead
from recsys_mtl.export.preprocess_graph import encoded_names, raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.export.task_subset import graph_stats
from recsys_mtl.train.run_folder import load_run
from tests.support.synthetic import synthetic_spec
from tests.support.export import make_run

HOME = {"groups": {"a": ["task0", "task1"], "b": ["task2", "task3"]}, "expert_hidden": [16], "feature_gate_rank": 2}


def _outputs(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed)))


@pytest.mark.parametrize(("model", "params", "tasks", "cli"), [
    ("home", HOME, ["task2", "task0"], False),  # two levels: last-level pruning of other groups' and tasks' experts
    # graph-level: other tasks' banks, gates, towers; through `recsys-mtl export --tasks` (what it prints and writes)
    ("ple", {"expert_hidden": [8], "num_levels": 1}, ["task3"], True),
])
@pytest.mark.slow
def test_task_sparse_graph_matches_full_model_and_is_smaller(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str,
                                                             params: dict[str, Any], tasks: list[str], cli: bool) -> None:
    spec = synthetic_spec(4)
    train = generate(SyntheticConfig(rows=600, num_tasks=4, seed=1))
    test = generate(SyntheticConfig(rows=300, num_tasks=4, seed=2))
    run = make_run(tmp_path, spec, train, model, params)
    if cli:  # parity rows from the run's own data source
        assert main(["export", str(run), "--out", str(tmp_path / "sub"), "--tasks", ",".join(tasks), "--parity-rows", "50"]) == 0
        assert f"task-sparse graph for {', '.join(sorted(tasks))}" in capsys.readouterr().out
        metadata = json.loads((tmp_path / "sub" / "metadata.json").read_text())
    else:
        metadata = export_run(run, tmp_path / "sub", parity_rows=50, test=test, tasks=tasks).metadata
    assert metadata["tasks"] == sorted(tasks) and [o["name"] for o in metadata["outputs"]] == sorted(tasks)
    loaded = load_run(run)
    feed = raw_feed(raw_inputs(loaded.preprocessor), test)
    got = _outputs(tmp_path / "sub" / "model.onnx", feed)
    assert set(got) == set(tasks)
    # reference: the unpruned model scoring every task, in torch on the Python preprocessing
    pre = loaded.preprocessor
    cols = pre.transform(test).columns()
    head = ScoringHead(loaded.model, list(spec.tasks), encoded_names(pre))
    with torch.no_grad():
        ref = dict(zip([t.name for t in spec.tasks], head(*[cols[n] for n in encoded_names(pre)])))
    for t in tasks:
        np.testing.assert_allclose(got[t], ref[t].numpy(), atol=1e-5, rtol=0)
    info = metadata["task_subset"]
    for key in ("nodes", "initializers", "parameters", "bytes"):
        assert info["subset"][key] < info["full"][key], key
    assert graph_stats(onnx.load(tmp_path / "sub" / "model.onnx"))["parameters"] >= info["subset"]["parameters"]


@pytest.mark.slow
def test_home_subset_drops_masked_experts(tmp_path: Path) -> None:
    """HoME's last level keeps only global, own-group and own experts: the weight count shrinks
    by the other group's and other tasks' expert banks, not only by their towers."""
    spec = synthetic_spec(4)
    df = generate(SyntheticConfig(rows=300, num_tasks=4, seed=1))
    run = make_run(tmp_path, spec, df, "home", {**HOME, "num_levels": 1, "feature_gate": False, "expert_norm": False})
    sub = export_run(run, tmp_path / "sub", parity_rows=50, test=df, tasks=["task0"])
    net = load_run(run).model
    level = net.levels[0]
    per_bank = sum(p.numel() for p in level.task_experts[0].parameters())
    towers = sum(p.numel() for p in net.towers.towers[1].parameters())
    gate = sum(p.numel() for p in level.task_gates[1].parameters())
    info = sub.metadata["task_subset"]
    # dropped: 3 task banks + 1 group bank (same size here) + 3 towers + 3 gates + sliced gate rows
    assert info["full"]["parameters"] - info["subset"]["parameters"] >= 4 * per_bank + 3 * (towers + gate)


def test_cli_export_unknown_task_and_no_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any export (the CLI's successful --tasks export: the ple case above)."""
    spec = synthetic_spec(2)
    df = generate(SyntheticConfig(rows=400, num_tasks=2, seed=1))
    run = make_run(tmp_path, spec, df, "mmoe", {"expert_hidden": [8], "num_experts": 2})
    assert main(["export", str(run), "--out", str(tmp_path / "unknown"), "--tasks", "task0,nope"]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SpecError, match="at least one task"):
        export_run(run, tmp_path / "none", tasks=[])
    assert not (tmp_path / "unknown").exists() and not (tmp_path / "none").exists()
