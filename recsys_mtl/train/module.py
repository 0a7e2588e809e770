"""The LightningModule: per-task losses → balancing strategy → one loss; metrics per split."""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor

from recsys_mtl.balancing.base import Balancer, StepContext
from recsys_mtl.balancing.capture import SharedCapture
from recsys_mtl.data.tensors import Batch, EncodedTable, features_only
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.spec.features import Task
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.losses import loss_fn, weighted_mean
from recsys_mtl.train.balancer_feed import BalancerFeed
from recsys_mtl.train.execution import GroupedLoader, check_callbacks, check_strategy, run_group
from recsys_mtl.train.compile import compile_errors, compile_model, eager_odd_batch, eager_unless, make_eager
from recsys_mtl.train.finite_guard import NonFiniteLossError, describe, nonfinite_total
from recsys_mtl.train.task_metrics import TaskMetrics
from recsys_mtl.train.optim import clip_gradients, configure, needs_schedule, use_sparse_embeddings

SPLITS = ("val", "test")


class MultiTaskModule(L.LightningModule):
    def __init__(self, model: MultiTaskModel, tasks: Sequence[Task], balancer: Balancer, trainer_cfg: TrainerConfig):
        super().__init__()
        self.model = model
        self.sparse_tables = use_sparse_embeddings(model, trainer_cfg)  # before DDP wraps the model
        self.tasks = list(tasks)
        self.balancer = balancer
        self.shared = SharedCapture(model)  # the shared representation gradient strategies act on
        self.cfg = trainer_cfg
        self.losses = [loss_fn(t.loss_name) for t in self.tasks]
        #: every task one logit under BCE (never standardized): the step's row losses are one
        #: elementwise BCE over the stacked (B, T) logits, not a loss per task and a stack
        self.one_bce = all(t.loss_name == "bce" and t.output_dim == 1 for t in self.tasks)
        self.register_buffer("task_weights", torch.tensor([t.weight for t in self.tasks]), persistent=False)
        self.metrics = torch.nn.ModuleDict({s: TaskMetrics(self.tasks) for s in SPLITS})
        self._eval_sums = torch.zeros(len(self.tasks))
        self._eval_weights = torch.zeros(len(self.tasks))
        self.feed = BalancerFeed(self)

    @property  # type: ignore[override]
    def automatic_optimization(self) -> bool:
        """Lightning's automatic optimization for single batches; with ``trainer.steps_per_execution`` > 1
        the training step runs a group's optimizer steps itself (:func:`~recsys_mtl.train.execution.run_group`).
        Read from ``cfg`` (a benchmark or a study may swap it before a fit)."""
        return self.cfg.steps_per_execution == 1

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        features = features_only(batch)
        if self.cfg.compile is None:
            return self.model(features)
        rows = next(iter(features.values())).shape[0]
        with compile_errors(self.model), eager_odd_batch(self.cfg.compile, self.training, rows, self.cfg.batch_size):
            return self.model(features)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self._trainer is not None:  # before anything trains: groups need one process, batch-agnostic callbacks
            check_strategy(self.trainer.strategy, self.cfg.steps_per_execution)
            check_callbacks(self.trainer.callbacks, self.cfg.steps_per_execution)
        if stage == "fit" and self.cfg.compile is not None:  # trainer.compile: in place, for this fit only
            compile_model(self.model, self.cfg.compile)

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.cfg.compile is not None:  # validate / test / calibration / export: eager
            make_eager(self.model)

    def _row_losses(self, logits: dict[str, Tensor], batch: Batch) -> list[Tensor]:
        """Per task, the (B,) unreduced loss (regression on the train-standardized scale when the
        model standardizes targets): the one definition training and evaluation reduce."""
        labels = batch["labels"]
        scale = self.model.towers.standardize
        return [fn(scale(i, logits[t.name].float()), scale(i, labels[:, i])) for i, (t, fn) in enumerate(zip(self.tasks, self.losses))]

    def task_losses(self, logits: dict[str, Tensor], batch: Batch) -> Tensor:
        """(T,) losses, each the weighted mean over rows its mask counts, times the spec weight."""
        weights = batch["weights"]
        per_task = [weighted_mean(loss, weights[:, i]) for i, loss in enumerate(self._row_losses(logits, batch))]
        return torch.stack(per_task) * self.task_weights

    def task_loss_sums(self, logits: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(T,) Σ_rows w·loss and (T,) Σ_rows w, for losses exact over many batches (sums / weights)."""
        weights = batch["weights"]
        sums = [(loss * weights[:, i]).sum() for i, loss in enumerate(self._row_losses(logits, batch))]
        return torch.stack(sums).detach(), weights.sum(0).float().detach()

    def exact_losses(self, sums: Tensor, weights: Tensor) -> Tensor:
        """(T,) masked weighted mean losses over everything summed into ``sums`` / ``weights``
        (all ranks), times the spec weights."""
        if self._trainer is not None:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            weights = self.trainer.strategy.reduce(weights, reduce_op="sum")
        return sums / weights.clamp_min(1e-12) * self.task_weights.to(sums)

    # ------------------------------------------------------------------ train
    def _reevaluate(self, batch: Batch) -> Tensor:
        """(T,) losses of ``batch`` from a fresh forward (strategies that perturb parameters)."""
        losses = self.task_losses(self(batch), batch)
        self.shared.pop()  # this extra forward's representation is not the step's
        return losses

    def _guard(self, batch: Batch, logits: dict[str, Tensor] | None, losses: Tensor, total: Tensor) -> None:
        """Raise :class:`NonFiniteLossError` when ``total`` () is not finite on any rank, before the
        backward pass and the optimizer step (the weights stay the last good ones). ``total`` sums
        ``losses`` (T,) (the step's first check), or ``losses`` were checked before (its second):
        one scalar read covers both (:func:`nonfinite_total`); ``losses`` name the task at fault."""
        bad = local = nonfinite_total(total)
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank stops at the same step
            bad = self.trainer.strategy.reduce_boolean_decision(local, all=False)
        if bad and not local:
            raise NonFiniteLossError(f"training loss is not finite at step {self.global_step} (epoch {self.current_epoch}) "
                                     f"on another DDP rank (this is rank {self.global_rank}); every rank stopped there, "
                                     "see that rank's error. The run folder keeps the last good checkpoint and is marked FAILED")
        if bad:
            layout = self.model.context.layout
            raise NonFiniteLossError(describe(
                step=self.global_step, epoch=self.current_epoch, task_names=self.model.task_names, losses=losses, total=total,
                numeric=batch.get("numeric"), numeric_names=[*layout.numeric, *layout.indicators], logits=logits,
                params=list(self.model.parameters()),
            ))

    def step_rows(self, logits: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(B, T) per-row losses the training step balances, times the spec weights (RL modes weigh
        rows first), and the (B, T) row weights (mask × row weight) that reduce them."""
        if self.one_bce:  # elementwise: each (row, task) value is the per-task loss's
            stacked = torch.stack([logits[t.name] for t in self.tasks], dim=1).float()
            return self.losses[0](stacked, batch["labels"]) * self.task_weights, batch["weights"]
        return torch.stack(self._row_losses(logits, batch), dim=1) * self.task_weights, batch["weights"]

    def step_losses(self, logits: dict[str, Tensor], batch: Batch) -> Tensor:
        """(T,) losses the training step balances: :meth:`step_rows` reduced per task."""
        return weighted_mean(*self.step_rows(logits, batch))

    def train_columns(self, table: EncodedTable) -> dict[str, Tensor]:
        """Extra (N, ·) columns the training loader carries for ``table`` (RL modes: transitions)."""
        return {}

    def logs_this_step(self) -> bool:
        """Whether this training step's scalars reach the loggers: Lightning writes on-step values
        only every ``log_every_n_steps`` batches (and at a stop), and ``self.log`` costs ~0.5 ms of
        Python per call (peer-sized census MMoE fit: 1.13× the rows per CPU second without it), so the
        other steps skip it. True outside a fit."""
        if self._trainer is None:
            return True
        # Lightning's own test, not a copy of it; private, so a Lightning that moves it logs every step
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def _shows_progress(self) -> bool:
        """A progress bar shows ``train/loss`` at every step."""
        return self._trainer is not None and self.trainer.progress_bar_callback is not None

    def step_total(self, batch: Batch, logs: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """One batch's forward, balancing and finite-loss guard: the () total loss to back-propagate,
        and (when ``logs``) the scalars of the step's logs by name ({} otherwise)."""
        logits = self(batch)
        rows = self.step_rows(logits, batch)
        losses = weighted_mean(*rows)
        aux = self.model.auxiliary_loss()  # read before a strategy re-runs the forward (SAMO)
        self._guard(batch, logits, losses, losses.sum() if aux is None else losses.sum() + aux)
        ctx = StepContext(
            step=self.global_step, epoch=self.current_epoch, model=self.model,
            shared=self.shared.pop(), shared_params=self.shared.params, evaluate=lambda: self._reevaluate(batch),
            rows=rows,
        )
        total = self.balancer(losses, ctx)
        scalars: dict[str, Tensor] = {}
        if aux is not None:
            total = total + aux
            if logs:
                scalars["train/auxiliary_loss"] = aux
        reg = self.model.regularization(batch)  # rarity-aware id L2, wide shrinkage: added like aux
        if reg is not None:
            total = total + reg
            if logs:
                scalars["train/regularization"] = reg
        self._guard(batch, None, losses, total)  # the balanced total (a strategy's own arithmetic)
        if logs:
            scalars["train/loss"] = total
            for i, name in enumerate(self.model.task_names):
                scalars[f"train/{name}/loss"] = losses[i]
            for name, w in self.balancer.weight_dict().items():
                scalars[f"balance/{name}/weight"] = w  # type: ignore[assignment]
            for key, value in self.balancer.diagnostics().items():
                scalars[f"balance/{key}"] = value  # type: ignore[assignment]
        return total, scalars

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        if not self.automatic_optimization:  # trainer.steps_per_execution > 1: a group of batches
            assert isinstance(batch, list), "trainer.steps_per_execution > 1 trains on groups of batches"
            return run_group(self, batch, self._shows_progress())
        assert not isinstance(batch, list)
        logs = self.logs_this_step()
        total, scalars = self.step_total(batch, logs)
        n = batch["labels"].shape[0]
        if logs or self._shows_progress():
            self.log("train/loss", total, prog_bar=True, batch_size=n)
        for name, value in scalars.items():
            if name != "train/loss":
                self.log(name, value, batch_size=n)
        return total

    def on_train_start(self) -> None:
        self.feed.on_train_start()

    def after_batch(self, batch: Batch) -> None:
        """Per batch, after its optimizer step: the balancer's post-step losses, the model's own."""
        self.feed.after_step(batch)
        self.model.after_step(batch)  # max-norm of the id rows the step used

    def on_train_batch_end(self, outputs: object, batch: Batch | list[Batch], batch_idx: int) -> None:
        if self.automatic_optimization:  # a group ran after_batch per batch (run_group)
            self.after_batch(batch)  # type: ignore[arg-type]

    def execution_loader(self, loader: Any) -> Any:
        """The training loader as the training step takes it: batches, or groups of
        ``trainer.steps_per_execution`` batches (:class:`~recsys_mtl.train.execution.GroupedLoader`)."""
        k = self.cfg.steps_per_execution
        return loader if k == 1 else GroupedLoader(loader, k, self.cfg.limit_train_batches)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # groups run under manual optimization, where Lightning never clips: clip here, where
        # Lightning's automatic optimization does (after 16-mixed's unscale, before the step)
        if not self.automatic_optimization and self.cfg.gradient_clip_val:
            self.configure_gradient_clipping(optimizer, self.cfg.gradient_clip_val, "norm")

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:  # type: ignore[no-untyped-def,override]
        """Steps every batch, or once per window of batches a strategy accumulates (GCond)."""
        if self.balancer.steps_optimizer():
            optimizer.step(closure=optimizer_closure)
        elif optimizer_closure is not None:
            optimizer_closure()  # forward + backward: gradients accumulate into .grad

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer) -> None:  # type: ignore[no-untyped-def,override]
        if self.balancer.zeroes_gradients():
            optimizer.zero_grad()

    # ------------------------------------------------------------------ eval
    def _eval_step(self, batch: Batch, split: str) -> None:
        with eager_unless(self.cfg.compile):  # compiled only with trainer.compile.evaluation
            logits = self(batch)
        sums, weights = self.task_loss_sums(logits, batch)
        self._eval_sums = self._eval_sums.to(sums.device) + sums
        self._eval_weights = self._eval_weights.to(sums.device) + weights
        self.metrics[split].update(logits, batch["labels"], batch["weights"], batch.get("groups"))  # type: ignore[operator]

    def _eval_epoch_end(self, split: str) -> None:
        metrics = self.metrics[split]
        values = metrics.compute()  # type: ignore[operator]
        metrics.reset()  # type: ignore[operator]
        # exact over the split (and all ranks): Σ w·loss / Σ w, not a mean of batch means
        mean_losses = self.exact_losses(self._eval_sums, self._eval_weights)
        self._eval_sums, self._eval_weights = torch.zeros_like(self._eval_sums), torch.zeros_like(self._eval_weights)
        loss_values = {f"{t.name}/loss": float(mean_losses[i]) for i, t in enumerate(self.tasks)}
        loss_values["loss"] = float(mean_losses.sum())
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=True)
        self.log_dict({f"{split}/{k}": v for k, v in loss_values.items()}, prog_bar=False)  # already global
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
        with eager_unless(self.cfg.compile):
            return self(batch)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None) -> None:
        if gradient_clip_val:  # torch's clipping rejects the sparse gradients of large tables
            clip_gradients((p for g in optimizer.param_groups for p in g["params"]), gradient_clip_val, gradient_clip_algorithm or "norm")

    def configure_optimizers(self) -> Any:
        steps = None
        if needs_schedule(self.cfg):  # only a schedule needs the trainer's step count
            total = self.trainer.estimated_stepping_batches  # inf for a stream of unknown length
            if not self.automatic_optimization:  # Lightning counts groups: the schedule counts optimizer steps
                # (the loader is set up by now: estimated_stepping_batches above sets it up)
                total = self.trainer.max_epochs * self.trainer.train_dataloader.batches_per_epoch()  # type: ignore[union-attr]
            steps = int(total) if math.isfinite(total) else None
        return configure(self.model, self.balancer, self.cfg, steps)
