"""Training-dynamics data maps per task (Swayamdipta et al., "Dataset Cartography", EMNLP 2020;
reference code ``allenai/cartography``), as STG-MTL (Sherif et al., 2023) uses them.

As in the reference (``cartography/classification/run_glue.py``: the logits of each training
batch's forward are kept with the examples' ids and written per epoch), the probabilities come
from the training forward passes themselves: the logits the training step already computed, in
training mode (dropout on), each with the weights of its own step. For a fixed sample of training
rows, every epoch keeps per task and row the probability of the true class:

- confidence  = mean over epochs of p(true class)   (T, N)
- variability = std over epochs of p(true class)    (T, N), population std as in the paper

Binary tasks: ``σ(z)`` for a positive label, ``1 − σ(z)`` otherwise; multiclass: ``softmax(z)[y]``.
Regression tasks have no true-class probability and rows a task's weight masks out are not
labelled for it: both are NaN and left out of the task representations.

How rows are found: the callback adds a row-index column (:data:`ROW_KEY`, (B,) int64) to the
training batches (``train_columns``, asked by the data module), and a forward hook on the model
keeps the first forward of each training batch (strategies that run more forwards per step —
SAMO's perturbed passes, FAMO's post-step pass — are not the step's training pass).

``datamaps.npz`` (plain arrays, no pickle) in the run folder holds ``probs`` (E, T, N), ``rows``
(N,) indices into the train split and ``tasks`` (T,) names.

Deviations:

- the reference records every training example; here a seeded sample of ``max_rows`` rows (4,096)
  bounds the file and STG-MTL's task vectors (2N values per task);
- with DDP each rank sees its own shard; the per-epoch maps are summed over ranks (a row is seen
  by one rank per epoch), where the reference runs on one process. A streamed training set
  (``parquet_stream``) has no row indices: no maps are recorded, with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import Task

log = logging.getLogger(__name__)
FILE = "datamaps.npz"
#: training-batch column: (B,) int64 index of each row in the training table
ROW_KEY = "datamaps_row"


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
    """Records p(true class) of ``max_rows`` fixed training rows from the training forward passes
    of every epoch and writes ``datamaps.npz`` into the run folder (the trainer's
    ``default_root_dir``) at the end of the fit."""

    #: its batch hooks read one training batch (refused with trainer.steps_per_execution > 1)
    reads_training_batches = True

    def __init__(self, max_rows: int = 4096, seed: int = 0):
        self.max_rows, self.seed = max_rows, seed
        self.rows: np.ndarray | None = None
        self.probs: list[np.ndarray] = []
        self._slot: Tensor | None = None  # (N_table,) position of a table row in the sample, −1 if not sampled
        self._sum: Tensor | None = None  # (T, N) this epoch's Σ p over the sampled rows' passes
        self._seen: Tensor | None = None  # (T, N) and how many passes (1 per epoch; 0 = not seen)
        self._armed = False
        self._logits: dict[str, Tensor] | None = None
        self._hook: Any = None

    # ------------------------------------------------------------ the recording, without Lightning
    def sample(self, n: int) -> np.ndarray:
        """Draws the ``max_rows`` sampled rows of an ``n``-row training table (once; seeded)."""
        if self.rows is None:
            rng = np.random.default_rng(self.seed)
            self.rows = np.sort(rng.choice(n, size=min(self.max_rows, n), replace=False))
            slot = torch.full((n,), -1, dtype=torch.long)
            slot[torch.from_numpy(self.rows)] = torch.arange(len(self.rows))
            self._slot = slot
        return self.rows

    def observe(self, logits: dict[str, Tensor], index: Tensor, labels: Tensor, weights: Tensor, tasks: Sequence[Task]) -> None:
        """One training batch: {task: (B, ·) logits of its training pass}, (B,) table row indices,
        (B, T) labels and weights; keeps p(true class) of the sampled rows among them."""
        assert self._slot is not None, "sample() the training table first"
        slot = self._slot[index.cpu()]
        hit = slot >= 0
        if not bool(hit.any()):
            return
        if self._sum is None:
            self._sum = torch.zeros(len(tasks), len(self.rows))  # type: ignore[arg-type]
            self._seen = torch.zeros_like(self._sum)
        assert self._seen is not None
        picked = {k: v.detach()[hit.to(v.device)] for k, v in logits.items()}
        p = true_class_probability(picked, labels[hit.to(labels.device)], weights[hit.to(weights.device)], tasks)  # (T, h)
        ok = ~torch.isnan(p)
        cols = slot[hit]
        self._sum[:, cols] += torch.where(ok, p, torch.zeros_like(p))
        self._seen[:, cols] += ok.float()

    def end_epoch(self, reduce: Any = None) -> np.ndarray | None:
        """Closes an epoch: (T, N) mean p(true class) per sampled row (NaN where never seen), also
        appended to :attr:`probs`. ``reduce``: sums a tensor over DDP ranks (None: one process)."""
        if self._sum is None or self._seen is None:
            return None
        total, seen = self._sum, self._seen
        if reduce is not None:
            total, seen = reduce(total), reduce(seen)
        probs = torch.where(seen > 0, total / seen.clamp_min(1), torch.full_like(total, float("nan"))).numpy()
        self.probs.append(probs)
        self._sum = self._seen = None
        return probs

    # ------------------------------------------------------------ Lightning hooks
    def train_columns(self, table: EncodedTable) -> dict[str, Tensor]:
        """The row-index column the data module adds to the training batches."""
        self.sample(len(table))
        return {ROW_KEY: torch.arange(len(table))}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        def keep_first(module: torch.nn.Module, args: Any, output: Any) -> None:
            if self._armed and module.training and isinstance(output, dict):
                self._logits, self._armed = output, False

        self._hook = pl_module.model.register_forward_hook(keep_first)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._armed, self._logits = ROW_KEY in batch, None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._armed = False
        if self._logits is not None and ROW_KEY in batch:
            self.observe(self._logits, batch[ROW_KEY], batch["labels"], batch["weights"], pl_module.tasks)
        self._logits = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.rows is None:
            if not self.probs:
                log.warning("data maps: the training set has no row indices (streamed); no data maps recorded")
            return
        distributed = getattr(trainer, "world_size", 1) > 1
        self.end_epoch((lambda t: trainer.strategy.reduce(t.to(pl_module.device), reduce_op="sum").cpu()) if distributed else None)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
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
