"""Permutation feature importance per task (Breiman, 2001; Fisher et al., 2019).

For each feature, its encoded columns are shuffled across the rows of the validation split (one
permutation for all of a feature's columns: a numeric value and its missing indicator move
together) and the drop of each task's metric is recorded, averaged over ``repeats``
permutations. Metrics: AUC (binary), accuracy (multiclass), −RMSE (regression), so a larger drop
always means a more important feature. Rows a task's mask does not count are left out of its
metric. Only the model's inputs are shuffled, so no retraining and no test rows are involved.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import EncodedTable, features_only
from recsys_mtl.spec.features import Task


def _auc(out: Tensor, y: Tensor) -> float:
    return float(binary_auroc(out.float().sigmoid(), y.long()))


def _accuracy(out: Tensor, y: Tensor) -> float:
    return float((out.argmax(-1) == y.long()).float().mean())


def _neg_rmse(out: Tensor, y: Tensor) -> float:
    return -float(((out.float() - y) ** 2).mean().sqrt())


#: task type → (metric name, metric on (logits, labels); larger is better)
SCORES: dict[str, tuple[str, Callable[[Tensor, Tensor], float]]] = {
    "binary": ("auc", _auc),
    "multiclass": ("accuracy", _accuracy),
    "regression": ("neg_rmse", _neg_rmse),
}


def feature_columns(layout: Layout) -> dict[str, dict[str, list[int] | str]]:
    """feature → where its encoded values sit: categorical / numeric column indices, or a sequence."""
    out: dict[str, dict[str, Any]] = {}
    for i, (name, _) in enumerate(layout.categorical):
        out.setdefault(name, {}).setdefault("categorical", []).append(i)
    for j, name in enumerate([*layout.numeric, *layout.indicators]):
        out.setdefault(name, {}).setdefault("numeric", []).append(j)
    for name, *_ in layout.sequences:
        out.setdefault(name, {})["sequence"] = name
    return out


def _permuted(table: EncodedTable, where: dict[str, Any], perm: Tensor) -> EncodedTable:
    cat, num, seqs = table.categorical, table.numeric, table.sequences
    if "categorical" in where:
        cat = cat.clone()
        cat[:, where["categorical"]] = cat[perm][:, where["categorical"]]
    if "numeric" in where:
        num = num.clone()
        num[:, where["numeric"]] = num[perm][:, where["numeric"]]
    if "sequence" in where:
        seqs = {**seqs, where["sequence"]: seqs[where["sequence"]][perm]}
    return replace(table, categorical=cat, numeric=num, sequences=seqs)


@torch.no_grad()
def _scores(model: torch.nn.Module, tasks: Sequence[Task], table: EncodedTable, batch_size: int) -> dict[str, float]:
    parts: dict[str, list[Tensor]] = {}
    for batch in ColumnBatchLoader(table, batch_size):
        for name, logit in model(features_only(batch)).items():
            parts.setdefault(name, []).append(logit)
    out = {}
    for i, task in enumerate(tasks):
        keep = table.weights[:, i] > 0
        out[task.name] = SCORES[task.type][1](torch.cat(parts[task.name])[keep], table.labels[keep, i])
    return out


def permutation_importance(
    model: torch.nn.Module, tasks: Sequence[Task], layout: Layout, table: EncodedTable,
    repeats: int = 3, seed: int = 0, batch_size: int = 8192,
) -> dict[str, Any]:
    """``{"metric": {task: name}, "baseline": {task: score}, "importance": {task: {feature: {"mean", "std"}}}}``."""
    model.eval()
    base = _scores(model, tasks, table, batch_size)
    g = torch.Generator().manual_seed(seed)
    drops: dict[str, dict[str, list[float]]] = {t.name: {} for t in tasks}
    for feature, where in feature_columns(layout).items():
        for _ in range(repeats):
            perm = torch.randperm(len(table), generator=g)
            scores = _scores(model, tasks, _permuted(table, where, perm), batch_size)
            for t in tasks:
                drops[t.name].setdefault(feature, []).append(base[t.name] - scores[t.name])
    importance = {
        task: dict(sorted(
            ((f, {"mean": float(np.mean(v)), "std": float(np.std(v))}) for f, v in per.items()),
            key=lambda kv: -kv[1]["mean"],
        ))
        for task, per in drops.items()
    }
    return {
        "metric": {t.name: SCORES[t.type][0] for t in tasks},
        "baseline": base,
        "repeats": repeats,
        "importance": importance,
    }


def plot_importance(result: dict[str, Any], path: Any, top: int = 20) -> None:
    """One horizontal bar panel per task: the ``top`` features by mean drop, ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys_mtl.diagnostics.plot import save_png

    tasks = list(result["importance"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 0.3 * top + 1.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        items = list(result["importance"][task].items())[:top][::-1]
        ax.barh([f for f, _ in items], [v["mean"] for _, v in items], xerr=[v["std"] for _, v in items], color="tab:blue")
        ax.set_title(f"{task}: drop in {result['metric'][task]} (baseline {result['baseline'][task]:.4f})", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("permutation importance, validation split")
    fig.tight_layout()
    save_png(fig, path, 90)


def importance_table(result: dict[str, Any], top: int = 15) -> str:
    """Markdown table: one row per feature (the union of each task's ``top``), a column per task."""
    tasks = list(result["importance"])
    keep = list(dict.fromkeys(f for t in tasks for f in list(result["importance"][t])[:top]))
    lines = ["| feature | " + " | ".join(f"{t} ({result['metric'][t]} drop)" for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for f in keep:
        cells = [f"{result['importance'][t][f]['mean']:+.4f} ± {result['importance'][t][f]['std']:.4f}" for t in tasks]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
