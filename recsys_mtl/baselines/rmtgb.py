"""R-MTGB: robust multi-task gradient boosting (Emami, Martínez-Muñoz, Hernández-Lobato), on LightGBM.

The model of task r on input x (reference code GAA-UAM/R-MTGB, ``_ensemble_pred``)::

    F_r(x) = f_shared(x) + σ(θ_r) · f_outlier(x) + (1 − σ(θ_r)) · f_regular(x) + f_r(x)

trained in three boosting stages over the pooled rows of all tasks (a row of task r is one
(example, task) pair; here every example carries every task, so the pool is N·T rows, each task's
rows being those its weight counts):

1. shared: ``f_shared`` boosted on the pooled rows with the task's own loss;
2. outlier / regular groups: every iteration fits one tree of ``f_outlier`` to the pooled
   gradient weighted by σ(θ_r) and one tree of ``f_regular`` to it weighted by 1 − σ(θ_r), then
   takes a gradient step on each task's θ_r (the learned task membership), with the gradient
   ``∂L_r/∂θ_r = Σ g · σ'(θ_r) · (f_outlier − f_regular)`` computed at the ensemble before this
   iteration's trees, as the reference does;
3. task-specific: one booster per task, continuing from F_r (LightGBM ``init_score``).

Tasks with σ(θ_r) → 1 use the outlier function: they are the outlier tasks.

Follows the paper / reference code in the decomposition, the three stages, the σ-weighted
gradients of stage 2 (the trees fit the weighted gradient with the unweighted hessian, like the
reference's leaf values: a damped step that stays finite as σ → 0 or 1) and the θ update.
Deviations, and why:

* trees are LightGBM's (leaf-wise, ``num_leaves``, bagging and column sampling, native
  categoricals) instead of scikit-learn depth-limited trees, so the baseline is as strong and as
  fast as the per-task LightGBM next to it; stage 1 and 3 use LightGBM's own objective and early
  stopping on the validation split (the reference uses a fixed number of iterations per stage);
  stage 2 runs ``group_rounds`` iterations and keeps the iteration (trees and θ) with the lowest
  pooled validation loss;
* θ starts from each task's loss after the shared stage (relative to a constant predictor),
  θ_r = log(ratio_r / median ratio), instead of small random numbers: with θ = 0 for all tasks
  the two group functions receive identical gradients and never separate, and a random start
  makes which group is called "outlier" an accident of the seed. A typical task starts at 0
  (σ = ½), one the shared function serves much worse leans to the outlier group;
* the θ step uses the mean over the task's rows (the reference sums), so the step size does not
  grow with the number of rows, plus an L2 penalty ``theta_l2`` on θ (the regularised task
  parameters);
* the reported outlier tasks are those with σ(θ_r) > ``OUTLIER_SIGMA`` (0.7) when they are fewer
  than half the tasks (an "outlier" group holding the majority is the regular one; with two
  tasks none is flagged). Without an outlier every σ stays near ½; with one it goes to ~1 and
  the others to ~0 (tests/baselines/test_rmtgb.py);
* one loss for all tasks (all binary or all regression): the shared and group functions pool
  rows of every task; multiclass tasks are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recsys_mtl.baselines.config import LightGBMParams, RMTGBParams
from recsys_mtl.baselines.lightgbm_tasks import lgb_params, require_lightgbm
from recsys_mtl.baselines.tabular import TreeColumns, evaluate, tree_matrix
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.spec.features import Task

Kind = Literal["binary", "regression"]
#: σ(θ_r) above which a task counts as an outlier task
OUTLIER_SIGMA = 0.7


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def grad_hess(kind: Kind, f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and hessian of the per-row loss w.r.t. the raw score ``f`` (log loss or ½ squared error)."""
    if kind == "binary":
        p = _sigmoid(f)
        return p - y, np.maximum(p * (1 - p), 1e-16)
    return f - y, np.ones_like(f)


def row_loss(kind: Kind, f: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind == "binary":
        return np.logaddexp(0.0, f) - y * f
    return 0.5 * (f - y) ** 2


@dataclass
class Pooled:
    """Rows of all tasks stacked: (example, task) pairs with a positive weight."""

    x: np.ndarray  # (P, D)
    task: np.ndarray  # (P,) int
    y: np.ndarray  # (P,)
    w: np.ndarray  # (P,)

    @classmethod
    def of(cls, x: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> "Pooled":
        rows, tasks = np.nonzero(weights > 0)
        return cls(x[rows], tasks, labels[rows, tasks].astype(np.float64), weights[rows, tasks].astype(np.float64))


@dataclass
class RMTGB:
    """R-MTGB on a (N, D) matrix and (N, T) labels / weights; see the module docstring."""

    kind: Kind
    num_tasks: int
    lgb: LightGBMParams = field(default_factory=LightGBMParams)
    params: RMTGBParams = field(default_factory=RMTGBParams)
    seed: int = 0
    categorical: list[int] = field(default_factory=list)
    #: after fit: σ(θ_r) per task, the stage-2 history of θ, the boosters
    sigma: np.ndarray = field(init=False, default_factory=lambda: np.zeros(0))
    theta_history: list[np.ndarray] = field(init=False, default_factory=list)
    _shared: Any = field(init=False, default=None)
    _groups: tuple[Any, Any] | None = field(init=False, default=None)
    _group_rounds: int = field(init=False, default=0)
    _tasks: list[Any] = field(init=False, default_factory=list)

    # ------------------------------------------------------------------ fit
    def fit(self, x: np.ndarray, labels: np.ndarray, weights: np.ndarray, x_val: np.ndarray, labels_val: np.ndarray, weights_val: np.ndarray) -> "RMTGB":
        lgb = require_lightgbm()
        tr, va = Pooled.of(x, labels, weights), Pooled.of(x_val, labels_val, weights_val)
        base = self._params(metric="binary_logloss" if self.kind == "binary" else "l2")
        stop = [lgb.early_stopping(self.lgb.early_stopping_rounds, first_metric_only=True, verbose=False)]

        # stage 1: shared boosting over the pooled rows
        f_tr, f_va = np.zeros(len(tr.y)), np.zeros(len(va.y))
        if self.params.shared_rounds > 0:
            d_tr = self._dataset(lgb, tr)
            self._shared = lgb.train(base, d_tr, self.params.shared_rounds, valid_sets=[self._dataset(lgb, va, d_tr)], callbacks=stop)
            f_tr = self._shared.predict(tr.x, raw_score=True, num_iteration=self._shared.best_iteration)
            f_va = self._shared.predict(va.x, raw_score=True, num_iteration=self._shared.best_iteration)

        # stage 2: outlier / regular group functions and the task membership θ
        theta = self._initial_theta(tr, f_tr)
        out_tr, reg_tr, out_va, reg_va, theta = self._fit_groups(lgb, tr, va, f_tr, f_va, theta)
        self.sigma = _sigmoid(theta)
        f_tr = f_tr + self.sigma[tr.task] * out_tr + (1 - self.sigma[tr.task]) * reg_tr
        f_va = f_va + self.sigma[va.task] * out_va + (1 - self.sigma[va.task]) * reg_va

        # stage 3: one booster per task, continuing from the ensemble so far
        self._tasks = []
        for r in range(self.num_tasks):
            if self.params.task_rounds == 0:
                self._tasks.append(None)
                continue
            a, b = tr.task == r, va.task == r
            d_tr = lgb.Dataset(tr.x[a], tr.y[a], weight=tr.w[a], init_score=f_tr[a], categorical_feature=self.categorical, free_raw_data=True)
            d_va = lgb.Dataset(va.x[b], va.y[b], weight=va.w[b], init_score=f_va[b], reference=d_tr, categorical_feature=self.categorical)
            self._tasks.append(lgb.train({**base, "boost_from_average": False}, d_tr, self.params.task_rounds, valid_sets=[d_va], callbacks=stop))
        return self

    def _params(self, metric: str) -> dict[str, Any]:
        task = Task(name="pooled", label="y", type=self.kind)
        return lgb_params(task, self.lgb, self.seed, metric=metric)

    def _dataset(self, lgb: Any, rows: Pooled, reference: Any = None) -> Any:
        return lgb.Dataset(rows.x, rows.y, weight=rows.w, reference=reference, categorical_feature=self.categorical, free_raw_data=True)

    def _initial_theta(self, tr: Pooled, f: np.ndarray) -> np.ndarray:
        """θ_r = log of task r's loss ratio over the median task's (loss after the shared stage
        relative to a constant predictor): 0 for a typical task, large for one served badly."""
        ratio = np.zeros(self.num_tasks)
        for r in range(self.num_tasks):
            a = tr.task == r
            y, w = tr.y[a], tr.w[a]
            mean = np.average(y, weights=w)
            const = np.log(mean / (1 - mean)) if self.kind == "binary" else mean
            ratio[r] = np.average(row_loss(self.kind, f[a], y), weights=w) / max(np.average(row_loss(self.kind, np.full_like(y, const), y), weights=w), 1e-12)
        return np.log(np.maximum(ratio, 1e-12) / max(float(np.median(ratio)), 1e-12))

    def _fit_groups(self, lgb: Any, tr: Pooled, va: Pooled, f_tr: np.ndarray, f_va: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
        params = {**self._params(metric="None"), "objective": "none", "boost_from_average": False}
        boosters = (lgb.Booster(params, self._dataset(lgb, tr)), lgb.Booster(params, self._dataset(lgb, tr)))
        out_tr, reg_tr, out_va, reg_va = (np.zeros(len(tr.y)), np.zeros(len(tr.y)), np.zeros(len(va.y)), np.zeros(len(va.y)))
        self.theta_history = [theta.copy()]
        val_losses = [self._pooled_loss(va, f_va, out_va, reg_va, theta)]
        n_rows = np.bincount(tr.task, minlength=self.num_tasks).clip(min=1)
        for i in range(self.params.group_rounds):
            s = _sigmoid(theta)[tr.task]
            g, h = grad_hess(self.kind, f_tr + s * out_tr + (1 - s) * reg_tr, tr.y)
            g, h = g * tr.w, h * tr.w
            for booster, share in zip(boosters, (s, 1 - s)):
                booster.update(fobj=lambda _preds, _data, share=share: (share * g, h))
            # θ step at the ensemble before this iteration's trees, mean over each task's rows
            grad_theta = np.bincount(tr.task, g * s * (1 - s) * (out_tr - reg_tr), minlength=self.num_tasks) / n_rows
            theta = theta - self.params.theta_lr * (grad_theta + self.params.theta_l2 * theta)
            out_tr += boosters[0].predict(tr.x, start_iteration=i, num_iteration=1, raw_score=True)
            reg_tr += boosters[1].predict(tr.x, start_iteration=i, num_iteration=1, raw_score=True)
            out_va += boosters[0].predict(va.x, start_iteration=i, num_iteration=1, raw_score=True)
            reg_va += boosters[1].predict(va.x, start_iteration=i, num_iteration=1, raw_score=True)
            self.theta_history.append(theta.copy())
            val_losses.append(self._pooled_loss(va, f_va, out_va, reg_va, theta))
        best = int(np.argmin(val_losses))
        self._groups, self._group_rounds = boosters, best
        if best < self.params.group_rounds:  # recompute the group outputs at the selected iteration
            out_tr, reg_tr = self._group_predict(0, tr.x), self._group_predict(1, tr.x)
            out_va, reg_va = self._group_predict(0, va.x), self._group_predict(1, va.x)
        return out_tr, reg_tr, out_va, reg_va, self.theta_history[best]

    def _group_predict(self, k: int, x: np.ndarray) -> np.ndarray:
        if self._groups is None or self._group_rounds == 0:
            return np.zeros(len(x))
        return self._groups[k].predict(x, num_iteration=self._group_rounds, raw_score=True)

    def _pooled_loss(self, va: Pooled, f: np.ndarray, out: np.ndarray, reg: np.ndarray, theta: np.ndarray) -> float:
        s = _sigmoid(theta)[va.task]
        return float(np.average(row_loss(self.kind, f + s * out + (1 - s) * reg, va.y), weights=va.w))

    # ------------------------------------------------------------------ predict
    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """(N, T) raw scores (logits or values) of every task."""
        shared = self._shared.predict(x, raw_score=True, num_iteration=self._shared.best_iteration) if self._shared is not None else np.zeros(len(x))
        out, reg = self._group_predict(0, x), self._group_predict(1, x)
        scores = shared[:, None] + self.sigma[None, :] * out[:, None] + (1 - self.sigma[None, :]) * reg[:, None]
        for r, booster in enumerate(self._tasks):
            if booster is not None:
                scores[:, r] += booster.predict(x, raw_score=True, num_iteration=booster.best_iteration)
        return scores

    @property
    def outlier_tasks(self) -> list[int]:
        """Tasks in the outlier group (σ > OUTLIER_SIGMA), when that group is a minority."""
        high = [r for r in range(self.num_tasks) if self.sigma[r] > OUTLIER_SIGMA]
        return high if len(high) < self.num_tasks / 2 else []


def fit_rmtgb(
    tasks: list[Task], train: EncodedTable, valid: EncodedTable, test: EncodedTable, columns: TreeColumns,
    lgb: LightGBMParams, params: RMTGBParams, seed: int,
) -> dict[str, Any]:
    """R-MTGB on the pipeline's split: metrics like the other baselines, plus σ and the outlier tasks."""
    kinds = {t.type for t in tasks}
    if len(kinds) != 1 or not kinds <= {"binary", "regression"} or any(t.loss_name not in ("bce", "mse") for t in tasks):
        raise SpecError(f"R-MTGB pools every task under one loss: all tasks must be binary (bce) or all regression (mse), got {sorted(kinds)}")
    model = RMTGB(kind=kinds.pop(), num_tasks=len(tasks), lgb=lgb, params=params, seed=seed, categorical=columns.categorical)  # type: ignore[arg-type]
    model.fit(tree_matrix(train), train.labels.numpy(), train.weights.numpy(), tree_matrix(valid), valid.labels.numpy(), valid.weights.numpy())
    val_scores, test_scores = model.predict_raw(tree_matrix(valid)), model.predict_raw(tree_matrix(test))
    return {
        "val": evaluate(tasks, {t.name: val_scores[:, i] for i, t in enumerate(tasks)}, valid),
        "test": evaluate(tasks, {t.name: test_scores[:, i] for i, t in enumerate(tasks)}, test),
        "sigma": {t.name: round(float(model.sigma[i]), 4) for i, t in enumerate(tasks)},
        "outlier_tasks": [tasks[i].name for i in model.outlier_tasks],
    }
