"""Lookahead inter-task affinity (Fifty et al., "Efficiently Identifying Task Groupings for
Multi-Task Networks", NeurIPS 2021, TAG).

For a batch and parameters θ, a step on task i alone, θ' = θ − lr·∇L_i(θ), changes task j's loss:

    Z_{i→j} = 1 − L_j(θ') / L_j(θ)

positive when a step on i helps j. TAG averages Z over training steps; :class:`LookaheadAffinity`
does so every ``every_n_steps`` steps and writes ``affinity.json`` into the run folder.
Deviations from the reference: the lookahead is a plain SGD step (the reference replays the
run's optimizer), and the lookahead forwards run in eval mode so batch-norm statistics and
dropout are not disturbed. Task-specific parameters of other tasks receive no gradient from
L_i, so stepping every parameter is the same as stepping only the shared ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from recsys_mtl.data.tensors import Batch, features_only
from recsys_mtl.errors import DataError

FILE = "affinity.json"


def lookahead_affinity(model: nn.Module, batch: Batch, task_losses: Callable[[dict[str, Tensor], Batch], Tensor], lr: float) -> Tensor:
    """(T, T) matrix Z[i, j] = 1 − L_j(θ − lr·∇L_i) / L_j(θ) on one batch."""
    was_training = model.training
    model.eval()
    feats = features_only(batch)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    losses = task_losses(model(feats), batch)  # (T,)
    T = losses.shape[0]
    z = torch.zeros(T, T)
    with torch.enable_grad():
        for i in range(T):
            grads = torch.autograd.grad(losses[i], list(params.values()), retain_graph=i < T - 1, allow_unused=True)
            stepped = {n: (p - lr * g if g is not None else p) for (n, p), g in zip(params.items(), grads)}
            with torch.no_grad():
                after = task_losses(functional_call(model, stepped, (feats,)), batch)
            z[i] = 1.0 - (after / losses.detach().clamp_min(1e-12)).cpu()
    model.train(was_training)
    return z


class LookaheadAffinity(L.Callback):
    """Averages :func:`lookahead_affinity` over training batches (every ``every_n_steps``)."""

    #: its batch hooks read one training batch (refused with trainer.steps_per_execution > 1)
    reads_training_batches = True

    def __init__(self, every_n_steps: int = 10, lr: float | None = None):
        self.every_n_steps, self.lr = every_n_steps, lr
        self.total: Tensor | None = None
        self.count = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: Batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        lr = self.lr if self.lr is not None else pl_module.cfg.lr
        z = lookahead_affinity(pl_module.model, batch, pl_module.task_losses, lr)
        self.total = z if self.total is None else self.total + z
        self.count += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.total is not None and trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / FILE
            data = {"tasks": [t.name for t in pl_module.tasks], "steps": self.count,
                    "affinity": (self.total / self.count).tolist()}
            path.write_text(json.dumps(data, indent=1))


def load(run_dir: Path) -> tuple[np.ndarray, list[str]] | None:
    """The run's averaged (T, T) affinity and task names, or None when it was not recorded."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return np.asarray(data["affinity"], dtype=float), list(data["tasks"])
    except (ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a lookahead affinity file ({exc})") from None
