"""RMTL (Liu et al., WWW 2023) inside the Lightning step: the pipeline's ``rl: {name: rmtl}``.

The critics, targets and MDP are :mod:`recsys_mtl.balancing.rmtl`'s; this module runs them in
:class:`~recsys_mtl.train.module.MultiTaskModule`'s training step, so ``recsys-mtl fit`` trains
RMTL with the run folder, checkpoints, early stopping and export of any other run.

Sessions: ``rl.params.session_column`` names a ``group_by`` column of the spec (its codes are
already in the encoded table); a session's rows are its episode in the training table's row order
(the order of the training file: keep it in time order). Rows without a group (code 0) are
one-row episodes. Each training row carries the index of its next row and whether it ends its
episode as two extra loader columns; the step looks the next rows' features up in the training
table.

Per step: the model's forward gives the action (per-task probabilities); the critics take one TD
step on the batch's transitions; each row's task loss is weighted by ``1 − λ·Q_k(s, a_k)`` (over
the rows the task's mask counts), and the weighted (T,) losses go to the pipeline's balancer like
plain task losses (``equal`` gives RMTL's Σ_k). After the optimiser step the targets follow by a
soft update.

Deviations (besides those in :mod:`recsys_mtl.balancing.rmtl`): the critics and the target actor
are not in the checkpoint (the model's state dict stays the plain model's, so export and serving
are unchanged); ``--resume`` restarts them from fresh critics and a target copy of the resumed
actor. Only in-memory training data (not ``parquet_stream``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import Balancer
from recsys_mtl.balancing.rmtl import RMTLConfig, RMTLCritics, SessionEnv
from recsys_mtl.data.tensors import Batch, EncodedTable, features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.spec.features import Task, group_columns
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from recsys_mtl.train.rl import register_rl

#: extra training-batch columns: (B,) int64 index of the row's next row in the training table
#: (itself at an episode's end) and (B,) bool episode end
NEXT_KEY, DONE_KEY = "rmtl_next", "rmtl_done"


class RMTLTrainingConfig(RMTLConfig):
    session_column: str = Field(min_length=1)
    """a ``group_by`` column of the spec whose values are the session ids"""


@register_rl("rmtl")
class RMTLModule(MultiTaskModule):
    """RMTL: per-sample task loss weights from per-task TD critics over user sessions."""

    Config = RMTLTrainingConfig

    def __init__(self, model: MultiTaskModel, tasks: Sequence[Task], balancer: Balancer, trainer_cfg: TrainerConfig,
                 config: RMTLTrainingConfig, train: EncodedTable):
        super().__init__(model, tasks, balancer, trainer_cfg)
        self.check(config, tasks)
        columns = group_columns(list(tasks))
        assert train.groups is not None  # the spec has group columns, so the encoded table has groups
        codes = train.groups[:, columns.index(config.session_column)].numpy()
        # code 0: no session; each such row is its own one-row episode
        ids = np.where(codes > 0, codes, -1 - np.arange(len(codes)))
        env = SessionEnv.build(train, ids)
        self._next = torch.from_numpy(env.next)
        self._done = torch.from_numpy(env.done)
        self._features = features_only(train.columns())  # the next rows' inputs, on the CPU
        self.critics = _Holder(RMTLCritics(model, config))
        self.sessions = env.sessions

    @staticmethod
    def check(config: RMTLTrainingConfig, tasks: Sequence[Task]) -> None:
        """SpecError naming the field unless the session column is a ``group_by`` column and every
        task is binary (checked before any data is read)."""
        columns = group_columns(list(tasks))
        if config.session_column not in columns:
            raise SpecError(f"rl.params.session_column: {config.session_column!r} is not a group_by column of the spec "
                            f"(group_by columns: {', '.join(columns) or 'none'}); set group_by on the tasks to the session column")
        other = [t.name for t in tasks if t.type != "binary"]
        if other:
            raise SpecError(f"rl.name: 'rmtl' needs binary tasks (the action is a probability per task); not binary: {', '.join(other)}")

    def train_columns(self, table: EncodedTable) -> dict[str, Tensor]:
        return {NEXT_KEY: self._next, DONE_KEY: self._done}

    def on_fit_start(self) -> None:
        self.critics.value.to(self.device)

    def step_rows(self, logits: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(B, T) row losses c_bk·loss_bk · spec weight and the (B, T) mask w_bk that reduces them
        (the step balances Σ_b c_bk·w_bk·loss_bk / Σ_b w_bk), with c = 1 − λ·Q the critics'
        (B, T) weights after their TD step on this batch's transitions."""
        nxt = batch[NEXT_KEY].cpu()
        next_feats = {k: v[nxt].to(self.device) for k, v in self._features.items()}
        feats = {k: v for k, v in features_only(batch).items() if k not in (NEXT_KEY, DONE_KEY)}
        action = torch.stack([torch.sigmoid(logits[t.name].detach().float()) for t in self.tasks], dim=1)
        mask = batch["weights"]
        critic_w, closs = self.critics.value.update(self.model, feats, next_feats, batch[DONE_KEY], action, batch["labels"], mask)
        rows = torch.stack(self._row_losses(logits, batch), dim=1)  # (B, T)
        n = mask.shape[0]
        self.log("rmtl/critic_loss", closs, batch_size=n)
        for i, t in enumerate(self.tasks):
            self.log(f"rmtl/{t.name}/weight", (critic_w[:, i] * mask[:, i]).sum() / mask[:, i].sum().clamp_min(1e-12), batch_size=n)
        return critic_w * rows * self.task_weights, mask

    def after_batch(self, batch: Batch) -> None:
        super().after_batch(batch)
        self.critics.value.soft_update(self.model)


class _Holder:
    """Keeps the critics off the LightningModule's registered submodules (and so its state dict)."""

    def __init__(self, value: RMTLCritics):
        self.value = value
