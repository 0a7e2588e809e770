"""LightGBM per task as a practitioner writes it: the ``lightgbm`` side of ``recsys-mtl baseline``.

What separates it from feeding every encoded column to LightGBM as a native categorical (the
``lightgbm_plain`` side, kept for comparison; see :mod:`recsys_mtl.baselines.lightgbm_tasks`):

* **High-cardinality categoricals** (more distinct training values than
  ``practitioner.high_cardinality``) get one of the registered encodings below, **chosen on the
  validation split per task**: their training-frequency rank as an ordered numeric column
  (``rank``), or LightGBM's native categorical split with strong smoothing (``native_smooth``:
  ``cat_smooth`` / ``cat_l2`` / ``min_data_per_group`` / ``max_cat_threshold``). Native
  categorical splits on thousands of ids memorise the frequent ones and overfit the tail; a
  frequency rank lets rare and unseen ids share what ids of similar popularity do.
* **Low-cardinality categoricals** stay native (LightGBM's defaults) under those two; a third
  candidate, ``rank_all``, turns **every** categorical into its training-frequency rank (ordered
  splits on popularity instead of native subset splits). It is fitted whether or not a
  high-cardinality column exists: on census (no categorical above 100 values) it beats native
  categoricals by ~0.0005 AUC, so leaving it out would make the baseline weaker than it should be.
* **Early stopping on the task's own metric only**: AUC for binary tasks, l2 for regression,
  multi_logloss for multiclass, on validation; ``first_metric_only``.
* Each candidate encoding is fitted with early stopping; the one with the best validation value
  of the task's primary metric (the table's metric) wins; the **test split is scored once**, by
  the winner only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from recsys_mtl.baselines.compare import METRIC_SIGN, primary_metric
from recsys_mtl.baselines.config import LightGBMParams, PractitionerParams
from recsys_mtl.baselines.lightgbm_tasks import lgb_params, require_lightgbm
from recsys_mtl.baselines.tabular import TreeColumns, evaluate, tree_matrix
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.spec.features import Task

#: the early-stopping metric of each task type: the task's own metric and nothing else
STOP_METRIC = {"binary": "auc", "regression": "l2", "multiclass": "multi_logloss"}


@dataclass
class Encoded:
    """The three split matrices (N, F) float32 after an encoding, with their categorical columns."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    categorical: list[int]
    #: LightGBM parameters the encoding adds
    params: dict[str, Any]


class HighCardinalityEncoding(ABC):
    """How the high-cardinality categorical columns reach LightGBM."""

    #: whether the encoding only changes the high-cardinality columns (without any, it is the plain model)
    high_only: bool = True

    @abstractmethod
    def encode(self, train: np.ndarray, valid: np.ndarray, test: np.ndarray, columns: TreeColumns, high: list[int], p: PractitionerParams) -> Encoded:
        """Matrices (N, F) float32 of the three splits with columns ``high`` re-encoded; fitted on ``train`` only."""


_ENCODINGS: dict[str, HighCardinalityEncoding] = {}


def register_encoding(name: str) -> Callable[[type[HighCardinalityEncoding]], type[HighCardinalityEncoding]]:
    def deco(cls: type[HighCardinalityEncoding]) -> type[HighCardinalityEncoding]:
        if name in _ENCODINGS:
            raise ValueError(f"high-cardinality encoding {name!r} is registered twice")
        _ENCODINGS[name] = cls()
        return cls

    return deco


def encoding(name: str) -> HighCardinalityEncoding:
    try:
        return _ENCODINGS[name]
    except KeyError:
        raise SpecError(f"baselines.practitioner.encodings: unknown encoding {name!r} (choose from {sorted(_ENCODINGS)})") from None


def frequency_rank(train_col: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each value's training-frequency rank (1 = most frequent; ties by value), for ``train_col``
    and ``others``; a value absent from training gets rank (distinct training values + 1)."""
    values, counts = np.unique(train_col, return_counts=True)
    order = np.lexsort((values, -counts))  # by count descending, then by value
    rank = {float(v): r for r, v in enumerate(values[order], start=1)}
    unseen = float(len(values) + 1)
    lookup = np.vectorize(lambda v: rank.get(float(v), unseen), otypes=[np.float32])
    # vectorised over the distinct values of each column only (ids repeat a lot)
    out = []
    for col in (train_col, *others):
        uniq, inverse = np.unique(col, return_inverse=True)
        out.append(lookup(uniq)[inverse].astype(np.float32) if len(uniq) else col.astype(np.float32))
    return out


@register_encoding("rank")
class RankEncoding(HighCardinalityEncoding):
    """Training-frequency rank as an ordered numeric column (unseen ids rank after every training id)."""

    def encode(self, train: np.ndarray, valid: np.ndarray, test: np.ndarray, columns: TreeColumns, high: list[int], p: PractitionerParams) -> Encoded:
        tr, va, te = train.copy(), valid.copy(), test.copy()
        for c in high:
            tr[:, c], va[:, c], te[:, c] = frequency_rank(train[:, c], valid[:, c], test[:, c])
        return Encoded(tr, va, te, [c for c in columns.categorical if c not in high], {})


@register_encoding("rank_all")
class RankAllEncoding(HighCardinalityEncoding):
    """Every categorical column (high-cardinality or not) as its training-frequency rank: no native
    categorical left; what the in-graph trees of ``encoder.gbdt_leaves`` see (the vocabulary
    index, ordered by training frequency)."""

    high_only = False

    def encode(self, train: np.ndarray, valid: np.ndarray, test: np.ndarray, columns: TreeColumns, high: list[int], p: PractitionerParams) -> Encoded:
        return RankEncoding().encode(train, valid, test, columns, list(columns.categorical), p)


@register_encoding("native_smooth")
class NativeSmoothEncoding(HighCardinalityEncoding):
    """LightGBM's native categorical split with strong smoothing of the per-category statistics."""

    def encode(self, train: np.ndarray, valid: np.ndarray, test: np.ndarray, columns: TreeColumns, high: list[int], p: PractitionerParams) -> Encoded:
        params = {"cat_smooth": p.cat_smooth, "cat_l2": p.cat_l2, "min_data_per_group": p.min_data_per_group,
                  "max_cat_threshold": p.max_cat_threshold}
        return Encoded(train, valid, test, list(columns.categorical), params)


def high_cardinality_columns(train: np.ndarray, columns: TreeColumns, threshold: int) -> list[int]:
    """Categorical columns with more than ``threshold`` distinct training values."""
    return [c for c in columns.categorical if len(np.unique(train[:, c])) > threshold]


def _rows(table: EncodedTable, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = table.weights[:, col].numpy()
    keep = w > 0
    return keep, table.labels[keep, col].numpy(), w[keep]


def fit_practitioner_lightgbm(
    tasks: list[Task], train: EncodedTable, valid: EncodedTable, test: EncodedTable, columns: TreeColumns,
    params: LightGBMParams, practitioner: PractitionerParams, seed: int,
) -> dict[str, Any]:
    """One booster per task, its high-cardinality encoding chosen on validation.

    Returns ``{"val": {...}, "test": {...}, "best_iteration": {task: n}, "choice": {task: {...}}}``;
    ``choice`` records the encoding picked per task, the validation value of every candidate and
    the high-cardinality columns.
    """
    lgb = require_lightgbm()
    raw = tree_matrix(train), tree_matrix(valid), tree_matrix(test)
    high = high_cardinality_columns(raw[0], columns, practitioner.high_cardinality)
    # without high-cardinality columns every high-only encoding is the same (plain) model: fit one of them
    names = list(practitioner.encodings)
    if not high:
        plain = [n for n in names if encoding(n).high_only][:1]
        names = [n for n in names if not encoding(n).high_only or n in plain]
    encoded = {name: encoding(name).encode(*raw, columns, high, practitioner) for name in names}
    scores: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}
    best_iter: dict[str, int] = {}
    choice: dict[str, Any] = {}
    for col, task in enumerate(tasks):
        keep_tr, y_tr, w_tr = _rows(train, col)
        keep_va, y_va, w_va = _rows(valid, col)
        metric = primary_metric(task)
        fitted: dict[str, tuple[Any, int, float, np.ndarray]] = {}
        for name, enc in encoded.items():
            common = {"feature_name": columns.names, "categorical_feature": enc.categorical, "free_raw_data": True}
            dtrain = lgb.Dataset(enc.train[keep_tr], y_tr, weight=w_tr, **common)
            dvalid = lgb.Dataset(enc.valid[keep_va], y_va, weight=w_va, reference=dtrain, **common)
            booster = lgb.train(
                {**lgb_params(task, params, seed, metric=STOP_METRIC[task.type]), **enc.params},
                dtrain,
                num_boost_round=params.max_rounds,
                valid_sets=[dvalid],
                valid_names=["valid"],
                callbacks=[lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)],
            )
            n = int(booster.best_iteration or booster.current_iteration())
            val_scores = booster.predict(enc.valid, raw_score=True, num_iteration=n)
            value = evaluate(tasks, {task.name: val_scores}, valid)[f"{task.name}/{metric}"]
            fitted[name] = (booster, n, value, val_scores)
        sign = METRIC_SIGN[metric]
        winner = max(fitted, key=lambda k: sign * fitted[k][2])
        booster, n, _, val_scores = fitted[winner]
        best_iter[task.name] = n
        scores["val"][task.name] = val_scores
        # the test split is scored once: the chosen encoding, at the iteration selected on validation
        scores["test"][task.name] = booster.predict(encoded[winner].test, raw_score=True, num_iteration=n)
        choice[task.name] = {
            # no high-cardinality column and a high-only winner: nothing was encoded
            "encoding": winner if high or not encoding(winner).high_only else "none",
            f"val_{metric}": {k: round(v[2], 6) for k, v in fitted.items()},
            "best_iteration": {k: v[1] for k, v in fitted.items()},
        }
    return {
        "val": evaluate(tasks, scores["val"], valid),
        "test": evaluate(tasks, scores["test"], test),
        "best_iteration": best_iter,
        "choice": choice,
        "high_cardinality": [columns.names[c] for c in high],
    }
