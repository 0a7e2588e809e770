"""Per-task torchmetrics collections, evaluated only on rows the task's mask counts."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchmetrics as tm
from torch import Tensor, nn

from recsys_mtl.nn.named import NamedModuleDict
from recsys_mtl.spec.features import Task, group_columns
from recsys_mtl.train.gauc import GroupedAUROC


class LogLoss(tm.MeanMetric):
    """Mean cross-entropy of logits (binary or multiclass)."""

    def __init__(self, multiclass: bool = False) -> None:
        super().__init__()
        self.multiclass = multiclass

    def update(self, logits: Tensor, target: Tensor) -> None:  # type: ignore[override]
        if self.multiclass:
            loss = nn.functional.cross_entropy(logits.float(), target.long(), reduction="none")
        else:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        super().update(loss)


# metric name → factory(task); each metric's update takes (logits or values, target)
_FACTORIES: dict[str, dict[str, Callable[[Task], tm.Metric]]] = {
    "binary": {
        "auc": lambda t: tm.classification.BinaryAUROC(),
        "gauc": lambda t: GroupedAUROC(),
        "logloss": lambda t: LogLoss(),
        "accuracy": lambda t: tm.classification.BinaryAccuracy(),
    },
    "regression": {
        "rmse": lambda t: tm.MeanSquaredError(squared=False),
        "mae": lambda t: tm.MeanAbsoluteError(),
    },
    "multiclass": {
        "accuracy": lambda t: tm.classification.MulticlassAccuracy(num_classes=t.num_classes, average="micro"),
        "logloss": lambda t: LogLoss(multiclass=True),
    },
}
# which metrics want probabilities instead of logits
_ON_PROBS = {"auc", "gauc", "accuracy"}
# which metrics also take the row's group code
_GROUPED = {"gauc"}


class TaskMetrics(nn.Module):
    """Metric collections for all tasks of one split; ``compute`` gives ``{task/metric: value}``."""

    def __init__(self, tasks: Sequence[Task]):
        super().__init__()
        self.tasks = list(tasks)
        self.metrics = NamedModuleDict(
            {t.name: nn.ModuleDict({m: _FACTORIES[t.type][m](t) for m in t.metric_names}) for t in self.tasks}
        )
        columns = group_columns(self.tasks)
        #: task → column of the batch's ``groups`` tensor holding its grouping key
        self.group_index = {t.name: columns.index(t.group_by) for t in self.tasks if t.group_by is not None}

    def update(self, logits: dict[str, Tensor], labels: Tensor, weights: Tensor, groups: Tensor | None = None) -> None:
        for i, task in enumerate(self.tasks):
            keep = weights[:, i] > 0
            if not bool(keep.any()):
                continue
            out, y = logits[task.name][keep].detach(), labels[keep, i]
            probs = out.float().sigmoid() if task.type == "binary" else out.float().softmax(-1) if task.type == "multiclass" else out.float()
            for name, metric in self.metrics[task.name].items():  # type: ignore[union-attr]
                if name in _GROUPED:
                    if groups is None:
                        raise ValueError(f"task {task.name!r}: metric {name!r} needs the batch's 'groups'")
                    metric.update(probs, y.long(), groups[keep, self.group_index[task.name]])
                elif task.type == "regression":
                    metric.update(out.float(), y)
                elif name in _ON_PROBS:
                    metric.update(probs, y.long())
                else:
                    metric.update(out, y)

    def compute(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for task in self.tasks:
            for name, metric in self.metrics[task.name].items():  # type: ignore[union-attr]
                if metric.update_count == 0:
                    continue
                result[f"{task.name}/{name}"] = float(metric.compute())
        aucs = [v for k, v in result.items() if k.endswith("/auc")]
        if aucs:
            result["auc_mean"] = float(torch.tensor(aucs).mean())
        gaucs = [v for k, v in result.items() if k.endswith("/gauc")]
        if gaucs:
            result["gauc_mean"] = float(torch.tensor(gaucs).mean())
        return result

    def reset(self) -> None:
        for group in self.metrics.values():
            for metric in group.values():  # type: ignore[union-attr]
                metric.reset()
