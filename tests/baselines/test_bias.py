"""Bias baselines: user + item biases and the smoothed item rate against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_mtl.baselines.bias import BiasModel, entity_columns, fit_bias_baselines, fit_biases, fit_item_rate
from recsys_mtl.baselines.config import BiasParams
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec.features import Entities, Task

# toy ratings: encoded ids (0 = missing, 1 = OOV, 2.. = vocabulary)
USERS = np.array([2, 2, 3, 3, 4])
ITEMS = np.array([2, 3, 2, 3, 3])
Y = np.array([5.0, 3.0, 4.0, 2.0, 1.0])
W = np.ones(5)


def test_one_sweep_equals_the_hand_computed_biases() -> None:
    m = fit_biases((USERS, ITEMS), Y, W, lam=1.0, iterations=1)
    # μ = 15 / 5 = 3; residuals 2, 0, 1, -1, -2
    assert m.mu == pytest.approx(3.0)
    # users: (2 + 0) / (1 + 2), (1 - 1) / (1 + 2), -2 / (1 + 1)
    assert m.biases[0][2:] == pytest.approx([2 / 3, 0.0, -1.0])
    # items, on y - μ - b_u: item 2 rows (4/3, 1) → (7/3) / 3; item 3 rows (-2/3, -1, -1) → (-8/3) / 4
    assert m.biases[1][2:] == pytest.approx([7 / 9, -2 / 3])
    pred = m.predict((np.array([2, 4, 1, 9, 0]), np.array([3, 2, 2, 2, 1])))
    # user 9 was never seen (beyond the table), user 1 is OOV, user 0 missing: no user bias
    assert pred == pytest.approx([3 + 2 / 3 - 2 / 3, 3 - 1 + 7 / 9, 3 + 7 / 9, 3 + 7 / 9, 3.0])


def test_many_sweeps_reach_the_ridge_solution() -> None:
    lam = 2.0
    m = fit_biases((USERS, ITEMS), Y, W, lam=lam, iterations=300)
    # the same objective solved directly: (XᵀX + λI) b = Xᵀ(y − μ) over one-hot users 2-4, items 2-3
    X = np.concatenate([np.eye(5)[USERS][:, 2:], np.eye(4)[ITEMS][:, 2:]], axis=1)
    b = np.linalg.solve(X.T @ X + lam * np.eye(5), X.T @ (Y - Y.mean()))
    assert np.concatenate([m.biases[0][2:], m.biases[1][2:]]) == pytest.approx(b, abs=1e-8)


def test_oov_and_missing_ids_fit_no_bias() -> None:
    m = fit_biases((np.array([0, 1, 2, 2]), np.array([2, 2, 2, 2])), np.array([10.0, 10.0, 0.0, 0.0]), np.ones(4), lam=0.0, iterations=3)
    assert m.biases[0][:2] == pytest.approx([0.0, 0.0])


def test_item_rate_is_the_smoothed_rate_as_a_logit() -> None:
    items, y = np.array([2, 2, 2, 3]), np.array([1.0, 1.0, 0.0, 0.0])
    m = fit_item_rate(items, y, np.ones(4), prior=2.0)
    # p0 = 0.5; item 2: (2 + 2·0.5) / (3 + 2) = 0.6; item 3: (0 + 1) / (1 + 2) = 1/3; unseen: p0
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert m.predict((np.array([2, 3, 7, 1]),)) == pytest.approx([logit(0.6), logit(1 / 3), 0.0, 0.0])


def _table(users: np.ndarray, items: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> EncodedTable:
    cat = torch.as_tensor(np.stack([users, items], axis=1), dtype=torch.long)
    return EncodedTable(cat, torch.zeros(len(users), 0), {}, torch.as_tensor(labels, dtype=torch.float32), torch.as_tensor(weights, dtype=torch.float32))


def test_bias_baselines_pick_strengths_on_validation_and_skip_multiclass() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    users, items = rng.integers(2, 60, n), rng.integers(2, 40, n)
    u_eff, i_eff = rng.normal(0, 1, 60), rng.normal(0, 1, 40)
    rating = 3 + u_eff[users] + i_eff[items] + rng.normal(0, 0.5, n)
    click = (rng.random(n) < 1 / (1 + np.exp(-2 * i_eff[items]))).astype(float)
    labels, weights = np.stack([rating, click, np.zeros(n)], axis=1), np.ones((n, 3))
    tasks = [Task(name="rating", label="r", type="regression"), Task(name="click", label="c"),
             Task(name="kind", label="k", type="multiclass", num_classes=3)]
    tr, va, te = (_table(users[s], items[s], labels[s], weights[s]) for s in (slice(0, 3000), slice(3000, 3500), slice(3500, n)))
    cols = entity_columns(Layout(categorical=[("user_id", "user_id"), ("item_id", "item_id")]), Entities(user="user_id", item="item_id"))
    assert cols == {"user": 0, "item": 1}
    r = fit_bias_baselines(tasks, tr, va, te, cols, BiasParams(lambdas=[0.1, 1e6], priors=[1.0, 1e6]))
    assert set(r["choice"]) == {"rating", "click"}  # no bias baseline for a multiclass task
    # a huge strength shrinks every bias to zero: the small one wins on validation
    assert r["choice"]["rating"]["lambda"] == 0.1 and r["choice"]["click"]["prior"] == 1.0
    assert r["choice"]["click"]["entities"] == ["item"]
    assert r["test"]["rating/rmse"] < 0.6 and r["test"]["click/auc"] > 0.75
    assert not any(k.startswith("kind/") for k in r["test"])


def test_bias_model_predicts_mu_without_entities() -> None:
    assert BiasModel(2.5, (np.zeros(0),)).predict((np.array([3, 4]),)) == pytest.approx([2.5, 2.5])
