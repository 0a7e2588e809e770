"""Δm by hand on a toy table; the negative-transfer flag on a constructed case and a clean one."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_mtl.baselines.compare import delta_m, markdown_table, negative_transfer, summarize
from recsys_mtl.spec.features import Task


def test_delta_m_by_hand() -> None:
    # AUC: higher better, +1; RMSE: lower better, -1
    mt = {"ctr": 0.80, "watch": 9.0}
    st = {"ctr": 0.78, "watch": 10.0}
    metrics = {"ctr": "auc", "watch": "rmse"}
    by_hand = ((0.80 - 0.78) / 0.78 + -1 * (9.0 - 10.0) / 10.0) / 2  # (+2.564 % + 10 %) / 2
    assert delta_m(mt, st, metrics) == pytest.approx(by_hand)
    assert delta_m(mt, st, metrics) == pytest.approx(0.0628205, abs=1e-6)
    # a worse RMSE counts against the multitask model
    assert delta_m({"watch": 11.0}, {"watch": 10.0}, {"watch": "rmse"}) == pytest.approx(-0.1)


def test_negative_transfer_fires_beyond_seed_noise() -> None:
    # multitask clearly worse than single-task, small seed spread: flagged
    check = negative_transfer([0.940, 0.941, 0.939], [0.950, 0.951, 0.949], "auc")
    assert check.flag and check.gain < -check.threshold
    # lower-better metric: a higher RMSE is the worse side
    assert negative_transfer([1.20, 1.21, 1.19], [1.00, 1.01, 0.99], "rmse").flag


def test_negative_transfer_silent_within_noise_or_when_better() -> None:
    # difference far inside the seed spread
    assert not negative_transfer([0.940, 0.960, 0.950], [0.952, 0.945, 0.956], "auc").flag
    # multitask better
    assert not negative_transfer([0.96, 0.961], [0.95, 0.951], "auc").flag
    assert not negative_transfer([0.9, 0.91], [1.0, 1.01], "rmse").flag


def test_negative_transfer_one_seed_uses_tolerance() -> None:
    assert negative_transfer([0.90], [0.95], "auc", tolerance=0.002).flag
    assert not negative_transfer([0.9495], [0.95], "auc", tolerance=0.002).flag  # -0.05 % is inside 0.2 %


def _run(auc: float, rmse: float) -> dict[str, dict[str, float]]:
    values = {"a/auc": auc, "a/logloss": 0.3, "b/rmse": rmse, "b/mae": 1.0}
    return {"val": values, "test": values}


def test_summarize_table_and_flags() -> None:
    tasks = [Task(name="a", label="a", type="binary"), Task(name="b", label="b", type="regression")]
    results = {
        "multitask": {1: _run(0.90, 2.0), 2: _run(0.91, 2.1)},
        "single_task": {1: _run(0.85, 1.0), 2: _run(0.86, 1.1)},
        "lightgbm": {1: _run(0.88, 1.5), 2: _run(0.88, 1.5)},
    }
    s = summarize(results, tasks)
    assert s["primary_metric"] == {"a": "auc", "b": "rmse"}
    assert s["methods"]["multitask"]["a"]["test"]["mean"] == pytest.approx(0.905)
    assert s["negative_transfer"]["a"]["flag"] is False  # multitask better on a
    assert s["negative_transfer"]["b"]["flag"] is True  # RMSE doubled on b
    expected = ((0.905 - 0.855) / 0.855 - (2.05 - 1.05) / 1.05) / 2
    assert s["delta_m_test"] == pytest.approx(expected)
    assert set(s["delta_m_test_per_seed"]) == {1, 2}
    table = markdown_table(s)
    assert "| a | test auc | 0.9050 ± 0.0071 | 0.8550 ± 0.0071 | 0.8800 ± 0.0000 |" in table
    assert "**yes**" in table and f"{100 * expected:+.3f} %" in table


def test_single_task_config_watches_a_metric_that_exists_with_one_task(tmp_path: Path) -> None:
    from recsys_mtl.baselines.single_task import single_task_config, single_task_spec
    from recsys_mtl.spec import load_pipeline

    root = Path(__file__).resolve().parents[2]
    cfg, spec = load_pipeline(root / "pipelines" / "synthetic_mmoe.yaml", ["trainer.monitor=val/task1/logloss", "trainer.mode=min"])
    one = single_task_spec(spec, spec.tasks[0])
    assert [t.name for t in one.tasks] == ["task0"] and one.features == spec.features
    st = single_task_config(cfg, spec.tasks[0], seed=7, runs_dir=tmp_path)
    assert (st.trainer.monitor, st.trainer.mode, st.trainer.seed) == ("val/task0/auc", "max", 7)
    assert st.balancing.name == "equal" and st.runs_dir == tmp_path
    # a monitor of the task itself, or the mean AUC of a binary task, is kept
    assert single_task_config(cfg, spec.tasks[1], seed=7, runs_dir=tmp_path).trainer.monitor == "val/task1/logloss"
