"""The practitioner's LightGBM: frequency ranks, the per-task choice on validation, test scored once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_mtl.baselines.config import LightGBMParams, PractitionerParams
from recsys_mtl.baselines.practitioner import RankEncoding, encoding, fit_practitioner_lightgbm, frequency_rank, high_cardinality_columns
from recsys_mtl.baselines.tabular import TreeColumns, tree_matrix
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.spec.features import Task


def test_frequency_rank_orders_by_training_count_and_puts_unseen_last() -> None:
    train = np.array([7, 5, 5, 7, 5, 9], dtype=np.float32)
    tr, va = frequency_rank(train, np.array([9, 7, 11, 5], dtype=np.float32))
    # 5 (3 rows) → 1, 7 (2 rows) → 2, 9 (1 row) → 3; 11 never trained on → 3 + 1
    assert tr.tolist() == [2, 1, 1, 2, 1, 3]
    assert va.tolist() == [3, 2, 4, 1]


def test_frequency_rank_breaks_ties_by_value() -> None:
    (tr,) = frequency_rank(np.array([8, 3, 8, 3], dtype=np.float32))
    assert tr.tolist() == [2, 1, 2, 1]


def _data(n: int, seed: int) -> EncodedTable:
    """A long-tail id (col 0, ~400 values) whose effect follows its popularity, a 4-value
    categorical (col 1), one numeric; task 0 binary, task 1 regression (masked on half the rows)."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, 401) ** 1.1
    ids = rng.choice(400, size=n, p=weight / weight.sum()) + 2
    low = rng.integers(2, 6, n)
    x = rng.normal(size=n)
    pop = -np.log(ids.astype(float))
    z = 0.8 * pop + 0.5 * x + 0.3 * (low == 3) + rng.normal(0, 0.5, n)
    labels = np.stack([(z > np.median(z)).astype(float), z], axis=1)
    weights = np.stack([np.ones(n), (rng.random(n) < 0.5).astype(float)], axis=1)
    cat = torch.as_tensor(np.stack([ids, low], axis=1), dtype=torch.long)
    return EncodedTable(cat, torch.as_tensor(x[:, None], dtype=torch.float32), {},
                        torch.as_tensor(labels, dtype=torch.float32), torch.as_tensor(weights, dtype=torch.float32))


COLUMNS = TreeColumns.of(Layout(categorical=[("item_id", "item_id"), ("carrier", "carrier")], numeric=["x"]))
TASKS = [Task(name="click", label="c"), Task(name="value", label="v", type="regression")]
FAST = LightGBMParams(num_leaves=7, learning_rate=0.2, max_rounds=200, early_stopping_rounds=10, num_threads=1)


def test_only_the_long_tail_column_is_high_cardinality() -> None:
    m = tree_matrix(_data(3000, 0))
    assert high_cardinality_columns(m, COLUMNS, threshold=100) == [0]
    enc = RankEncoding().encode(m, m, m, COLUMNS, [0], PractitionerParams())
    assert enc.categorical == [1]  # the id became an ordered numeric, the small categorical stays native
    assert encoding("native_smooth").encode(m, m, m, COLUMNS, [0], PractitionerParams()).categorical == [0, 1]
    with pytest.raises(SpecError, match="unknown encoding 'target'"):
        encoding("target")


def test_choice_per_task_is_the_best_validation_candidate() -> None:
    pytest.importorskip("lightgbm")
    r = fit_practitioner_lightgbm(TASKS, _data(4000, 0), _data(1500, 1), _data(1500, 2), COLUMNS, FAST, PractitionerParams(), seed=1)
    assert r["high_cardinality"] == ["item_id"]
    for task, metric, sign in (("click", "auc", 1), ("value", "rmse", -1)):
        c = r["choice"][task]
        vals = c[f"val_{metric}"]
        assert set(vals) == {"rank", "native_smooth", "rank_all"}
        assert c["encoding"] == max(vals, key=lambda k: sign * vals[k])
        # the reported validation value is the winner's
        assert r["val"][f"{task}/{metric}"] == pytest.approx(vals[c["encoding"]], abs=1e-6)
    assert r["test"]["click/auc"] > 0.75


def test_without_high_cardinality_columns_the_plain_model_and_rank_all_are_fitted() -> None:
    pytest.importorskip("lightgbm")
    r = fit_practitioner_lightgbm(TASKS[:1], _data(2000, 0), _data(800, 1), _data(800, 2), COLUMNS, FAST,
                                  PractitionerParams(high_cardinality=1000), seed=1)
    assert r["high_cardinality"] == []
    # rank and native_smooth would both be the plain model: one fit; rank_all changes every categorical
    vals = r["choice"]["click"]["val_auc"]
    assert list(vals) == ["rank", "rank_all"]
    assert vals["rank"] != vals["rank_all"]
    expect = "rank_all" if vals["rank_all"] > vals["rank"] else "none"
    assert r["choice"]["click"]["encoding"] == expect


def test_rank_all_makes_every_categorical_an_ordered_frequency_rank() -> None:
    m = tree_matrix(_data(3000, 0))
    enc = encoding("rank_all").encode(m, m[:5], m[:5], COLUMNS, [], PractitionerParams())
    assert enc.categorical == []  # nothing native left, high-cardinality or not
    for c in (0, 1):
        np.testing.assert_array_equal(enc.train[:, c], frequency_rank(m[:, c])[0])
    np.testing.assert_array_equal(enc.train[:, 2], m[:, 2])  # numerics untouched


def test_rank_all_wins_where_popularity_orders_a_low_cardinality_effect() -> None:
    """A 60-value categorical whose effect is monotone in its popularity, the only signal, small
    trees: ordered splits on the rank need few splits, native subset splits overfit the rare values."""
    pytest.importorskip("lightgbm")

    def data(n: int, seed: int) -> EncodedTable:
        rng = np.random.default_rng(seed)
        w = 1.0 / np.arange(1, 61) ** 1.2
        v = rng.choice(60, size=n, p=w / w.sum())
        # vocabulary indices in a shuffled order: the popularity order is not the index order
        idx = np.random.default_rng(99).permutation(60)[v] + 2
        z = -0.6 * np.log1p(v) + rng.normal(0, 1.0, n)
        cat = torch.as_tensor(np.stack([idx, np.full(n, 2)], axis=1), dtype=torch.long)
        lab = torch.as_tensor((z > np.median(z)).astype(np.float32))[:, None]
        return EncodedTable(cat, torch.zeros(n, 1), {}, lab, torch.ones(n, 1))

    r = fit_practitioner_lightgbm(TASKS[:1], data(3000, 0), data(3000, 1), data(3000, 2), COLUMNS,
                                  FAST, PractitionerParams(high_cardinality=1000), seed=1)
    vals = r["choice"]["click"]["val_auc"]
    assert r["choice"]["click"]["encoding"] == "rank_all" and vals["rank_all"] > vals["rank"]


def test_plain_categoricals_are_native_and_bucketed_numerics_ordered(synth_df: object) -> None:
    from recsys_mtl.data.preprocess import Preprocessor
    from tests.support.synthetic import synthetic_spec

    pre = Preprocessor.fit(synthetic_spec(), synth_df)  # type: ignore[arg-type]
    cols = TreeColumns.of_preprocessor(pre)
    native = {cols.names[i] for i in cols.categorical}
    # cat0..cat5 have their own tables named like the feature: still categorical; num5 is quantile-bucketed
    assert native == {f"cat{j}" for j in range(6)}
    assert "num5" in cols.names
