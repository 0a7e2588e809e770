"""Training-dynamics data maps per task (Swayamdipta et al., EMNLP 2020), as STG-MTL uses them.

At the end of every training epoch the model scores a fixed sample of training rows; for each
task and row the probability of the true class is kept. Over E epochs:

- confidence  = mean over epochs of p(true class)   (T, N)
- variability = std over epochs of p(true class)    (T, N), population std as in the paper

Binary tasks: ``σ(z)`` for a positive label, ``1 − σ(z)`` otherwise; multiclass: ``softmax(z)[y]``.
Regression tasks have no true-class probability and rows a task's weight masks out are not
labelled for it: both are NaN and left out of the task representations.

``datamaps.npz`` (plain arrays, no pickle) in the run folder holds ``probs`` (E, T, N), ``rows``
(N,) indices into the train split and ``tasks`` (T,) names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from recsys_mtl.data.tensors import EncodedTable, features_only
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import Task

log = logging.getLogger(__name__)
FILE = "datamaps.npz"


def true_class_probability(logits: dict[str, Tensor], labels: Tensor, weights: Tensor, tasks: Sequence[Task]) -> Tensor:
    """{task: logits}, (N, T) labels and weights → (T, N) p(true class); NaN where undefined."""
    out = torch.full((len(tasks), labels.shape[0]), float("nan"))
    for i, t in enumerate(tasks):
        z = logits[t.name].detach().float().cpu()
        y = labels[:, i].cpu()
        if t.type == "binary":
            p = torch.sigmoid(z)
            out[i] = torch.where(y > 0.5, p, 1.0 - p)
        elif t.type == "multiclass":
            out[i] = torch.softmax(z, dim=-1).gather(1, y.long().clamp_min(0).unsqueeze(1)).squeeze(1)
        out[i][weights[:, i].cpu() <= 0] = float("nan")
    return out


def confidence_variability(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, T, N) probabilities → (T, N) confidence (mean) and variability (population std)."""
    return probs.mean(axis=0), probs.std(axis=0)


class DataMaps(L.Callback):
    """Records p(true class) of ``max_rows`` fixed training rows after every training epoch and
    writes ``datamaps.npz`` into the run folder (the trainer's ``default_root_dir``) at the end."""

    def __init__(self, max_rows: int = 4096, seed: int = 0, batch_size: int = 8192):
        self.max_rows, self.seed, self.batch_size = max_rows, seed, batch_size
        self.rows: np.ndarray | None = None
        self.probs: list[np.ndarray] = []

    def record(self, model: torch.nn.Module, table: EncodedTable, tasks: Sequence[Task]) -> np.ndarray:
        """Score the sampled rows with ``model`` (eval mode, restored after); returns (T, N)."""
        if self.rows is None:
            n = len(table)
            rng = np.random.default_rng(self.seed)
            self.rows = np.sort(rng.choice(n, size=min(self.max_rows, n), replace=False))
        idx = torch.from_numpy(self.rows)
        cols = {k: v[idx] for k, v in table.columns().items()}
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        parts = []
        with torch.no_grad():
            for s in range(0, len(idx), self.batch_size):
                batch = {k: v[s:s + self.batch_size].to(device) for k, v in features_only(cols).items()}
                parts.append(true_class_probability(model(batch), cols["labels"][s:s + self.batch_size],
                                                    cols["weights"][s:s + self.batch_size], tasks))
        model.train(was_training)
        probs = torch.cat(parts, dim=1).numpy()
        self.probs.append(probs)
        return probs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        table = getattr(trainer.datamodule, "tables", {}).get("train")
        if not isinstance(table, EncodedTable):
            if not self.probs:
                log.warning("data maps: the train split is streamed; no data maps recorded")
            return
        self.record(pl_module.model, table, pl_module.tasks)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.probs and trainer.is_global_zero:
            save(Path(trainer.default_root_dir) / FILE, np.stack(self.probs), self.rows, [t.name for t in pl_module.tasks])


def save(path: Path, probs: np.ndarray, rows: np.ndarray | None, tasks: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, probs=probs.astype(np.float32), rows=np.asarray(rows), tasks=np.asarray(list(tasks), dtype=str))
    tmp.replace(path)


def load(run_dir: Path) -> tuple[np.ndarray, list[str]]:
    """(E, T, N) probabilities and task names from a run folder."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise DataError(f"{path}: no data maps in this run folder (fit it with `recsys-mtl fit --data-maps`)")
    with np.load(path, allow_pickle=False) as z:
        return z["probs"], [str(t) for t in z["tasks"]]
