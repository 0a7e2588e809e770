"""Grouped AUC: a hand-computed toy table, one-class groups skipped, wired through spec and fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.train.gauc import GroupedAUROC, grouped_auc
from recsys_mtl.train.task_metrics import TaskMetrics
from recsys_mtl.train.fit import fit
from tests.support.synthetic import synthetic_spec
from tests.support.pipelines import small_pipeline

# group 1: positive above both negatives (AUC 1, 3 rows); group 2: 2 of 4 pairs ordered (AUC 0.5,
# 4 rows); group 3: positives only (skipped); group 4: one tied pair (AUC 0.5, 2 rows);
# group 0: no group (ignored)
SCORES = np.array([0.9, 0.3, 0.5, 0.2, 0.8, 0.4, 0.6, 0.7, 0.1, 0.5, 0.5, 0.99])
LABELS = np.array([1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0])
GROUPS = np.array([1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 0])
EXPECTED = (3 * 1.0 + 4 * 0.5 + 2 * 0.5) / (3 + 4 + 2)


def test_grouped_auc_matches_hand_computed_value_and_skips_one_class_groups() -> None:
    value, counted = grouped_auc(SCORES, LABELS, GROUPS)
    assert value == pytest.approx(EXPECTED)
    assert counted == 3
    # the one-class group's rows change nothing, whatever their scores
    other = SCORES.copy()
    other[7:9] = [0.0, 1.0]
    assert grouped_auc(other, LABELS, GROUPS)[0] == pytest.approx(EXPECTED)
    # row order does not matter
    perm = np.random.default_rng(0).permutation(len(SCORES))
    assert grouped_auc(SCORES[perm], LABELS[perm], GROUPS[perm])[0] == pytest.approx(EXPECTED)


def test_grouped_auc_equals_mean_of_per_group_reference_auc_on_random_data() -> None:
    import polars as pl

    def roc_auc_score(y: np.ndarray, p: np.ndarray) -> float:
        """Mann-Whitney form with average ranks for ties: an implementation independent of the one tested."""
        ranks = pl.Series(p).rank("average").to_numpy()
        n1, n0 = int(y.sum()), int(len(y) - y.sum())
        return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

    rng = np.random.default_rng(1)
    n = 3000
    groups = rng.integers(1, 60, n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.random(n) + 0.3 * labels, 2)  # rounding makes ties
    num = den = 0.0
    for g in np.unique(groups):
        m = groups == g
        if labels[m].min() != labels[m].max():
            num += m.sum() * roc_auc_score(labels[m], scores[m])
            den += m.sum()
    assert grouped_auc(scores, labels, groups)[0] == pytest.approx(num / den, abs=1e-12)


def test_metric_accumulates_batches() -> None:
    metric = GroupedAUROC()
    for part in np.array_split(np.arange(len(SCORES)), 3):
        metric.update(torch.tensor(SCORES[part]), torch.tensor(LABELS[part]), torch.tensor(GROUPS[part]))
    assert float(metric.compute()) == pytest.approx(EXPECTED)


def grouped_spec(group_by: str = "cat0") -> FeatureSpec:
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["group_by"] = group_by
    return FeatureSpec.model_validate(raw)


def test_spec_group_by_adds_gauc_and_needs_a_group() -> None:
    spec = grouped_spec()
    assert all(t.group_by == "cat0" and "gauc" in t.metric_names for t in spec.tasks)
    assert "cat0" in spec.required_columns()
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["tasks"][0]["metrics"] = ["auc", "gauc"]
    with pytest.raises(ValueError, match="gauc.*group_by"):
        FeatureSpec.model_validate(raw)


def test_task_metrics_gauc_uses_the_spec_group_column() -> None:
    spec = grouped_spec()
    df = generate(SyntheticConfig(rows=800, num_tasks=2, seed=3))
    table = Preprocessor.fit(spec, df).transform(df)
    assert table.groups is not None and table.groups.shape == (800, 1)
    rng = torch.Generator().manual_seed(0)
    logits = {t.name: torch.randn(800, generator=rng) + table.labels[:, i] for i, t in enumerate(spec.tasks)}
    metrics = TaskMetrics(spec.tasks)
    metrics.update(logits, table.labels, table.weights, table.groups)
    values = metrics.compute()
    codes = df["cat0"].cast(str).rank("dense").fill_null(0).to_numpy()
    expected = grouped_auc(logits["task0"].sigmoid().numpy(), table.labels[:, 0].numpy(), codes)[0]
    assert values["task0/gauc"] == pytest.approx(expected, abs=1e-6)
    assert "gauc_mean" in values


@pytest.mark.slow
def test_fit_monitors_validation_gauc(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(grouped_spec().model_dump(mode="json", exclude_defaults=True)))
    cfg, spec = small_pipeline(tmp_path, f"spec={spec_file}", "trainer.monitor=val/task0/gauc", "trainer.max_epochs=2", "trainer.plots=false")
    result = fit(cfg, spec)
    m = json.loads((result.run_dir / "metrics.json").read_text())
    assert m["monitor"]["name"] == "val/task0/gauc"
    assert 0.5 < m["val"]["task0/gauc"] <= 1.0 and 0.5 < m["test"]["task1/gauc"] <= 1.0
    assert m["monitor"]["best"] == pytest.approx(m["val"]["task0/gauc"], abs=1e-5)
