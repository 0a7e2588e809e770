"""The LightningModule: per-task losses → balancing strategy → one loss; metrics per split."""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch import Tensor

from recsys_mtl.balancing.base import Balancer, StepContext
from recsys_mtl.balancing.capture import SharedCapture
from recsys_mtl.data.tensors import Batch, features_only
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.spec.features import Task
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.losses import loss_fn, weighted_mean
from recsys_mtl.train.metrics import TaskMetrics

SPLITS = ("val", "test")


class MultiTaskModule(L.LightningModule):
    def __init__(self, model: MultiTaskModel, tasks: Sequence[Task], balancer: Balancer, trainer_cfg: TrainerConfig):
        super().__init__()
        self.model = model
        self.tasks = list(tasks)
        self.balancer = balancer
        self.shared = SharedCapture(model)  # the shared representation gradient strategies act on
        self.cfg = trainer_cfg
        self.losses = [loss_fn(t.loss_name) for t in self.tasks]
        self.register_buffer("task_weights", torch.tensor([t.weight for t in self.tasks]), persistent=False)
        self.metrics = torch.nn.ModuleDict({s: TaskMetrics(self.tasks) for s in SPLITS})
        self._eval_loss_sum = torch.zeros(len(self.tasks))
        self._eval_rows = 0

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.model(features_only(batch))

    def task_losses(self, logits: dict[str, Tensor], batch: Batch) -> Tensor:
        """(T,) losses, each the weighted mean over rows its mask counts, times the spec weight."""
        labels, weights = batch["labels"], batch["weights"]
        per_task = [
            weighted_mean(fn(logits[t.name].float(), labels[:, i]), weights[:, i])
            for i, (t, fn) in enumerate(zip(self.tasks, self.losses))
        ]
        return torch.stack(per_task) * self.task_weights

    # ------------------------------------------------------------------ train
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.task_losses(self(batch), batch)
        ctx = StepContext(
            step=self.global_step, epoch=self.current_epoch, model=self.model,
            shared=self.shared.pop(), shared_params=self.shared.params,
        )
        total = self.balancer(losses, ctx)
        n = batch["labels"].shape[0]
        aux = self.model.auxiliary_loss()
        if aux is not None:
            total = total + aux
            self.log("train/auxiliary_loss", aux, batch_size=n)
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        if self.global_step % self.cfg.log_every_n_steps == 0:
            for i, name in enumerate(self.model.task_names):
                self.log(f"train/{name}/loss", losses[i], batch_size=n)
            for name, w in self.balancer.weight_dict().items():
                self.log(f"balance/{name}/weight", w, batch_size=n)
            for key, value in self.balancer.diagnostics().items():
                self.log(f"balance/{key}", value, batch_size=n)
        return total

    # ------------------------------------------------------------------ eval
    def _eval_step(self, batch: Batch, split: str) -> None:
        logits = self(batch)
        losses = self.task_losses(logits, batch)
        n = batch["labels"].shape[0]
        self._eval_loss_sum = self._eval_loss_sum.to(losses.device) + losses.detach() * n
        self._eval_rows += n
        self.metrics[split].update(logits, batch["labels"], batch["weights"], batch.get("groups"))  # type: ignore[operator]

    def _eval_epoch_end(self, split: str) -> None:
        metrics = self.metrics[split]
        values = metrics.compute()  # type: ignore[operator]
        metrics.reset()  # type: ignore[operator]
        mean_losses = self._eval_loss_sum / max(self._eval_rows, 1)
        self._eval_loss_sum, self._eval_rows = torch.zeros_like(self._eval_loss_sum), 0
        for i, t in enumerate(self.tasks):
            values[f"{t.name}/loss"] = float(mean_losses[i])
        values["loss"] = float(mean_losses.sum())
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=True)
        if split == "val" and not self.trainer.sanity_checking:
            self.balancer.on_validation_end(mean_losses.detach().cpu(), self.current_epoch)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
