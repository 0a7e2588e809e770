"""Bias baselines: what a recommender must beat before any network is worth it.

* **Regression**: ``ŷ = μ + b_user + b_item`` with L2 on the biases (Koren, Bell & Volinsky
  2009, "baseline predictors"): minimise ``Σ w (y − μ − b_u − b_i)² + λ (Σ b_u² + Σ b_i²)``,
  ``μ`` the weighted training mean (not penalised). Solved by alternating least squares, each
  half-step closed form: ``b_u = Σ_{rows of u} w (y − μ − b_i) / (λ + Σ w)``, then the items the
  same way; ``iterations`` sweeps. λ is chosen on the validation split's primary metric.
* **Binary**: the smoothed item rate (popularity / item-mean): ``p_i = (Σ w y + α p₀) / (Σ w + α)``,
  ``p₀`` the weighted training rate; the score is ``logit(p_i)``. α is chosen on validation.

Ids come from the fitted vocabulary (the encoded categorical matrix): id 0 (missing) and id 1
(out of vocabulary: unseen or pooled rare values) get no bias, nor any id absent from training.
The spec's ``entities`` name the user and item features; the regression model uses whichever of
the two is named, the binary one the item (the user when no item is named).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys_mtl.baselines.compare import METRIC_SIGN, primary_metric
from recsys_mtl.baselines.config import BiasParams
from recsys_mtl.baselines.tabular import evaluate
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec.features import Entities, Task

#: ids below this are missing (0) and out of vocabulary (1): never given a bias
FIRST_KNOWN_ID = 2


@dataclass(frozen=True)
class BiasModel:
    """μ and (V,) bias arrays indexed by encoded id (one per entity; an empty array = entity unused)."""

    mu: float
    biases: tuple[np.ndarray, ...]

    def predict(self, ids: tuple[np.ndarray, ...]) -> np.ndarray:
        """(N,) predictions for (N,) id arrays, one per entity."""
        out = np.full(len(ids[0]), self.mu, dtype=np.float64)
        for b, x in zip(self.biases, ids):
            known = x < len(b)
            out[known] += b[x[known]]
        return out


def _known(x: np.ndarray) -> np.ndarray:
    return x >= FIRST_KNOWN_ID


def fit_biases(ids: tuple[np.ndarray, ...], y: np.ndarray, w: np.ndarray, lam: float, iterations: int) -> BiasModel:
    """Regularised additive biases by alternating least squares (see the module docstring).

    ``ids``: (N,) int arrays, one per entity (user, item); ``y``, ``w``: (N,) targets and weights.
    """
    mu = float(np.sum(w * y) / np.sum(w))
    size = [int(x.max()) + 1 for x in ids]
    biases = [np.zeros(n) for n in size]
    for _ in range(iterations):
        for k, x in enumerate(ids):
            rest = y - mu - sum(biases[j][ids[j]] for j in range(len(ids)) if j != k)
            wk = np.where(_known(x), w, 0.0)  # missing / OOV rows fit no bias
            num = np.bincount(x, weights=wk * rest, minlength=size[k])
            den = np.bincount(x, weights=wk, minlength=size[k])
            biases[k] = num / (lam + den) if lam > 0 else np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return BiasModel(mu, tuple(biases))


def fit_item_rate(ids: np.ndarray, y: np.ndarray, w: np.ndarray, prior: float) -> BiasModel:
    """Smoothed per-id rate as a logit: μ = logit(p₀), bias_i = logit(p_i) − logit(p₀)."""
    p0 = float(np.clip(np.sum(w * y) / np.sum(w), 1e-6, 1 - 1e-6))
    wk = np.where(_known(ids), w, 0.0)
    size = int(ids.max()) + 1
    pos = np.bincount(ids, weights=wk * y, minlength=size)
    tot = np.bincount(ids, weights=wk, minlength=size)
    p = np.clip((pos + prior * p0) / (tot + prior), 1e-6, 1 - 1e-6)
    mu = float(np.log(p0 / (1 - p0)))
    return BiasModel(mu, (np.log(p / (1 - p)) - mu,))


def entity_columns(layout: Layout, entities: Entities) -> dict[str, int]:
    """Column of each named entity in the encoded categorical matrix, ``{"user": c, "item": c}``."""
    names = [f for f, _ in layout.categorical]
    return {role: names.index(getattr(entities, role)) for role in ("user", "item") if getattr(entities, role) is not None}


def _ids(table: EncodedTable, cols: list[int], keep: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(table.categorical[:, c].numpy()[keep].astype(np.int64) for c in cols)


def fit_bias_baselines(
    tasks: list[Task], train: EncodedTable, valid: EncodedTable, test: EncodedTable, entity_cols: dict[str, int], params: BiasParams,
) -> dict[str, Any]:
    """The bias baseline of every binary and regression task; ``{"val", "test", "choice"}``.

    ``choice[task]`` names the model, its entities and the strength picked on validation.
    """
    scores: dict[str, dict[str, np.ndarray]] = {"val": {}, "test": {}}
    choice: dict[str, Any] = {}
    for col, task in enumerate(tasks):
        if task.type == "regression":
            roles = list(entity_cols)
            grid, strength = params.lambdas, "lambda"
        elif task.type == "binary":
            roles = ["item" if "item" in entity_cols else "user"]
            grid, strength = params.priors, "prior"
        else:
            continue  # multiclass: no bias baseline
        cols = [entity_cols[r] for r in roles]
        w_tr = train.weights[:, col].numpy()
        keep = w_tr > 0
        ids_tr, y_tr = _ids(train, cols, keep), train.labels[keep, col].numpy().astype(np.float64)
        all_va, all_te = np.ones(len(valid), bool), np.ones(len(test), bool)
        metric = primary_metric(task)
        tried: dict[float, tuple[float, BiasModel]] = {}
        for s in grid:
            model = (fit_biases(ids_tr, y_tr, w_tr[keep], s, params.iterations) if task.type == "regression"
                     else fit_item_rate(ids_tr[0], y_tr, w_tr[keep], s))
            val = evaluate(tasks, {task.name: model.predict(_ids(valid, cols, all_va))}, valid)[f"{task.name}/{metric}"]
            tried[s] = (val, model)
        best = max(tried, key=lambda s: METRIC_SIGN[metric] * tried[s][0])
        model = tried[best][1]
        scores["val"][task.name] = model.predict(_ids(valid, cols, all_va))
        scores["test"][task.name] = model.predict(_ids(test, cols, all_te))  # test scored once, by the pick
        choice[task.name] = {
            "model": "user + item bias" if task.type == "regression" else f"smoothed {roles[0]} rate",
            "entities": roles, strength: best, f"val_{metric}": {str(s): round(v[0], 6) for s, v in tried.items()},
        }
    return {"val": evaluate(tasks, scores["val"], valid), "test": evaluate(tasks, scores["test"], test), "choice": choice}
