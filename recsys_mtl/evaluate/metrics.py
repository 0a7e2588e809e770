"""Metrics of an export's outputs on labelled rows, with training's own definitions.

Every figure comes from the code training reports with: :class:`recsys_mtl.train.task_metrics.TaskMetrics`
(AUC, GAUC, log loss, accuracy, RMSE, MAE: each task's ``metric_names``, on the rows its mask
counts) and :func:`recsys_mtl.train.calibration.reliability` (ECE, predicted / observed, bins).
Labels, weights and groups are encoded by the preprocessing's own
:func:`~recsys_mtl.data.preprocess.encode_labels` / :func:`~recsys_mtl.data.preprocess.encode_groups`.

``TaskMetrics`` takes logits; the export serves probabilities (binary: sigmoid, multiclass:
softmax). They are turned back in float64: ``logit(p)`` and ``log(p)`` (softmax of ``log p`` is
``p``), so AUC, GAUC and accuracy see the served probabilities and log loss is the served
probabilities' log loss. A float32 probability of exactly 0 or 1 (a logit beyond about ±16.6, or
±88 towards 0) is clipped to the nearest representable one first: log loss then counts such a
row at that bound, an underestimate only for a confident wrong answer.

With a post-hoc calibrator in the run (``calibration:``), the export serves calibrated
probabilities: AUC and GAUC equal the run's (the map is monotone), log loss and ECE are the
calibrated ones (metrics.json's test figures are before calibration; calibration.json's after).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys_mtl.spec.features import Task
from recsys_mtl.train.calibration import reliability
from recsys_mtl.train.task_metrics import TaskMetrics

#: float32 probabilities are clipped into [TINY, 1 - 2^-24] before the logit
TINY = float(np.finfo(np.float32).tiny)
ONE_BELOW = 1.0 - 2.0**-24


def to_logits(task: Task, out: np.ndarray) -> Tensor:
    """A served output (B,) / (B, C) → what the model's head gave TaskMetrics in training."""
    x = out.astype(np.float64)
    if task.type == "binary":
        p = np.clip(x, TINY, ONE_BELOW)
        return torch.from_numpy(np.log(p) - np.log1p(-p))
    if task.type == "multiclass":
        return torch.from_numpy(np.log(np.clip(x, TINY, 1.0)))
    return torch.from_numpy(x)


def one_class(task: Task, labels: np.ndarray, keep: np.ndarray) -> bool:
    """A binary task whose counted rows hold one class: its AUC is undefined here."""
    if task.type != "binary":
        return False
    y = labels[keep]
    return y.size == 0 or bool(y.min() == y.max())


def task_metrics(tasks: list[Task], logits: dict[str, Tensor], labels: np.ndarray, weights: np.ndarray,
                 groups: np.ndarray | None, rows: np.ndarray | None = None) -> dict[str, float | None]:
    """``{task/metric: value}`` (the keys of metrics.json's splits) on ``rows`` (a bool mask; all by
    default). A metric undefined on these rows (AUC of one class, GAUC of no mixed group) is None."""
    sel = np.ones(labels.shape[0], bool) if rows is None else rows
    metrics = TaskMetrics(tasks)
    metrics.update({t.name: logits[t.name][torch.from_numpy(sel)] for t in tasks}, torch.from_numpy(labels[sel]),
                   torch.from_numpy(weights[sel]), None if groups is None else torch.from_numpy(groups[sel]))
    raw = metrics.compute()
    out: dict[str, float | None] = {}
    for i, t in enumerate(tasks):
        undefined = one_class(t, labels[sel, i], weights[sel, i] > 0)
        for name in t.metric_names:
            key = f"{t.name}/{name}"
            if key not in raw:
                continue
            value = raw[key]
            out[key] = None if (undefined and name in ("auc", "gauc")) or not np.isfinite(value) else value
    for mean in ("auc", "gauc"):
        vals = [v for k, v in out.items() if k.endswith(f"/{mean}") and v is not None]
        if vals:
            out[f"{mean}_mean"] = float(np.mean(vals))
    return out


def calibration(tasks: list[Task], outputs: dict[str, np.ndarray], labels: np.ndarray, weights: np.ndarray,
                rows: np.ndarray | None = None, bins: int = 15) -> dict[str, dict[str, Any]]:
    """Per binary task, :func:`reliability` of the served probabilities on the rows its mask counts."""
    sel = np.ones(labels.shape[0], bool) if rows is None else rows
    out = {}
    for i, t in enumerate(tasks):
        keep = sel & (weights[:, i] > 0)
        if t.type == "binary" and keep.any():
            out[t.name] = reliability(outputs[t.name][keep], labels[keep, i], bins)
    return out
