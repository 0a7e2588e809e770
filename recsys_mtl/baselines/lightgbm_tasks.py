"""One LightGBM per task on the pipeline's own split and fitted preprocessing.

Each task trains on the rows its weight counts (mask × sample weight, as the neural loss does),
stops early on the validation split's primary metric, and the test split is scored once with the
selected iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_mtl.baselines.config import LightGBMParams
from recsys_mtl.baselines.tabular import TreeColumns, evaluate, tree_matrix
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.spec.features import Task

#: task type / loss → LightGBM objective
_OBJECTIVE = {("binary", "bce"): "binary", ("regression", "mse"): "regression", ("regression", "huber"): "huber",
              ("regression", "mae"): "regression_l1", ("multiclass", "ce"): "multiclass"}
#: primary metric → LightGBM's metric of the same quantity (for early stopping)
_METRIC = {("binary", "auc"): "auc", ("binary", "logloss"): "binary_logloss", ("binary", "accuracy"): "binary_error",
           ("regression", "rmse"): "rmse", ("regression", "mae"): "l1",
           ("multiclass", "accuracy"): "multi_error", ("multiclass", "logloss"): "multi_logloss"}


def require_lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise RecsysMTLError("LightGBM baselines need the optional dependency: pip install 'recsys-mtl[baselines]'") from None
    return lightgbm


def lgb_params(task: Task, p: LightGBMParams, seed: int, metric: str | None = None) -> dict[str, Any]:
    """LightGBM parameters for one task (``metric`` overrides the early-stopping metric)."""
    params: dict[str, Any] = {
        "objective": _OBJECTIVE[(task.type, task.loss_name)],
        "metric": metric or _METRIC[(task.type, task.metric_names[0])],
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "bagging_fraction": p.subsample,
        "bagging_freq": 1 if p.subsample < 1 else 0,
        "feature_fraction": p.colsample,
        "min_child_samples": p.min_child_samples,
        "lambda_l2": p.lambda_l2,
        "seed": seed,
        "deterministic": True,
        "verbosity": -1,
    }
    if task.type == "multiclass":
        params["num_class"] = task.num_classes
    if p.num_threads is not None:
        params["num_threads"] = p.num_threads
    return {**params, **p.extra}


@dataclass
class TaskSplits:
    """Tree matrices of the three splits and the columns' description."""

    columns: TreeColumns
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @classmethod
    def of(cls, columns: TreeColumns, train: EncodedTable, valid: EncodedTable, test: EncodedTable) -> "TaskSplits":
        return cls(columns, tree_matrix(train), tree_matrix(valid), tree_matrix(test))


def _rows(table: EncodedTable, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = table.weights[:, col].numpy()
    keep = w > 0
    return keep, table.labels[keep, col].numpy(), w[keep]


def fit_lightgbm_per_task(
    tasks: list[Task], train: EncodedTable, valid: EncodedTable, test: EncodedTable, columns: TreeColumns, params: LightGBMParams, seed: int
) -> dict[str, Any]:
    """Fit one booster per task; returns ``{"val": {...}, "test": {...}, "best_iteration": {task: n}}``."""
    lgb = require_lightgbm()
    m = TaskSplits.of(columns, train, valid, test)
    scores: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}
    best: dict[str, int] = {}
    for col, task in enumerate(tasks):
        keep_tr, y_tr, w_tr = _rows(train, col)
        keep_va, y_va, w_va = _rows(valid, col)
        common = {"feature_name": columns.names, "categorical_feature": columns.categorical, "free_raw_data": True}
        dtrain = lgb.Dataset(m.train[keep_tr], y_tr, weight=w_tr, **common)
        dvalid = lgb.Dataset(m.valid[keep_va], y_va, weight=w_va, reference=dtrain, **common)
        booster = lgb.train(
            lgb_params(task, params, seed),
            dtrain,
            num_boost_round=params.max_rounds,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)],
        )
        best[task.name] = int(booster.best_iteration or booster.current_iteration())
        scores["val"][task.name] = booster.predict(m.valid, raw_score=True, num_iteration=best[task.name])
        # the test split is scored once, with the iteration selected on validation
        scores["test"][task.name] = booster.predict(m.test, raw_score=True, num_iteration=best[task.name])
    return {
        "val": evaluate(tasks, scores["val"], valid),
        "test": evaluate(tasks, scores["test"], test),
        "best_iteration": best,
    }
