"""The encoded splits as one matrix for tree models, and metrics computed the training module's way.

Trees see exactly what the neural models see after the fitted preprocessing: the categorical
ids of the encoded categorical matrix as native categoricals (0 = missing, 1 = out of
vocabulary, as the vocabulary was fitted on train), quantile-bucketed numerics as ordered bucket
indices, and the numeric matrix (imputed, clipped, log1p'd, standardised; trees are unaffected
by the monotone parts) with its missing indicators (``match`` outputs are numeric columns there). Sequence features (lists) have no column
here: the tree baselines do not see them, and :attr:`TreeColumns.dropped` names them so the
report can say so (the ``baseline`` command warns and records them in ``baselines.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from recsys_mtl.data.preprocess import Layout, Preprocessor
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.spec.features import Task, group_columns
from recsys_mtl.train.task_metrics import TaskMetrics


@dataclass(frozen=True)
class TreeColumns:
    """Column names of the tree matrix and which of them are categorical."""

    names: list[str]
    categorical: list[int]
    #: features of the spec with no column here (sequence features), left out of the trees
    dropped: tuple[str, ...] = ()

    @classmethod
    def of(cls, layout: Layout) -> "TreeColumns":
        """Quantile-bucketed numerics (``layout.ordered``) stay ordered; other table columns are
        native categoricals (a plain categorical's table is its own name too, so the table name
        cannot tell them apart)."""
        bucketed = set(layout.ordered)
        names = [f for f, _ in layout.categorical] + list(layout.numeric) + [f"{f}__missing" for f in layout.indicators]
        categorical = [i for i, (f, _) in enumerate(layout.categorical) if f not in bucketed]
        return cls(names, categorical, tuple(f for f, *_ in layout.sequences))

    @classmethod
    def of_preprocessor(cls, pre: Preprocessor) -> "TreeColumns":
        """The columns of a fitted preprocessing: its quantile-bucketed numerics stay ordered."""
        return cls.of(pre.layout)


def tree_matrix(table: EncodedTable) -> np.ndarray:
    """(N, C + M) float32: encoded categorical ids then numeric columns."""
    return np.concatenate([table.categorical.numpy().astype(np.float32), table.numeric.numpy()], axis=1)


def evaluate(tasks: Sequence[Task], scores: Mapping[str, np.ndarray], table: EncodedTable) -> dict[str, float]:
    """``{task/metric: value}`` of raw scores (logits / values, (N,) or (N, K)) on a split's rows.

    ``tasks`` are all the table's tasks in label-column order; the tasks in ``scores`` are
    evaluated. Uses the training module's :class:`TaskMetrics`, so mask, sample weights, groups
    (grouped AUC) and metric definitions are those of metrics.json.
    """
    out: dict[str, float] = {}
    grouping = group_columns(list(tasks))
    for col, task in enumerate(tasks):
        if task.name not in scores:
            continue
        metrics = TaskMetrics([task])
        logits = {task.name: torch.as_tensor(np.asarray(scores[task.name], dtype=np.float32))}
        # a one-task TaskMetrics reads its grouping key from column 0
        groups = None if task.group_by is None or table.groups is None else table.groups[:, [grouping.index(task.group_by)]]
        metrics.update(logits, table.labels[:, col : col + 1], table.weights[:, col : col + 1], groups)
        out.update({k: v for k, v in metrics.compute().items() if "/" in k})
    return dict(sorted(out.items()))
