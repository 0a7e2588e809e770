"""The balancing interface: per-task losses in, one scalar to back-propagate out.

A strategy sees the (T,) task losses and a :class:`StepContext`. Loss-weighting strategies
return ``Σ_t w_t·L_t``; gradient strategies (see :mod:`recsys_mtl.balancing.gradients`) return a
surrogate whose gradient is their combined direction, so the training step stays one ordinary
``backward()`` under Lightning's automatic optimization, mixed precision and DDP.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.registry import Registry
from recsys_mtl.strict import ParamsModel

log = logging.getLogger(__name__)


class BalancerConfig(ParamsModel):
    """Parameters every strategy accepts (the collapse watch); strategies extend it."""

    collapse_ratio: float = Field(0.01, ge=0, lt=1)
    """a task whose weight stays below ``collapse_ratio`` × mean weight for ``collapse_window`` consecutive steps triggers a
    warning (degenerate weights are a known failure of these methods)
    """
    collapse_window: int = Field(200, ge=1)
    """consecutive low-weight steps before the collapse warning"""


#: where gradient strategies take per-task gradients (see :meth:`StepContext.gradient_targets`)
GradientSpace = Literal["representation", "shared_parameters"]


@dataclass
class StepContext:
    """What a strategy may look at in a training step besides the losses."""

    step: int
    epoch: int
    #: the model, for strategies that need more than the fields below
    model: nn.Module | None = None
    #: this forward's shared representation(s), in the autograd graph: one tensor or several
    #: (e.g. MMoE's experts (B, E, H); HoME's global and group experts of the last level).
    #: None / empty when the model's shared modules did not run their forward this step
    shared: Tensor | Sequence[Tensor] | None = None
    #: trainable parameters every task depends on (``MultiTaskModel.shared_parameters()``)
    shared_params: Sequence[Tensor] = field(default_factory=tuple)
    #: re-runs the forward on this step's batch with the current parameter values and returns
    #: its (T,) task losses in a fresh graph (SAMO's perturbed passes); None when not available
    evaluate: Callable[[], Tensor] | None = None
    #: (B, T) per-row task losses (spec task weights applied; an RL mode's row weights too) and
    #: (B, T) row weights (label mask × row weight), with ``losses[t] = Σ_b w_bt·ℓ_bt / Σ_b w_bt``:
    #: for strategies that weigh rows (per-row preferences); None when not available
    rows: tuple[Tensor, Tensor] | None = None

    def representations(self) -> list[Tensor]:
        """The shared representation tensors that carry a gradient this step (possibly none)."""
        if self.shared is None:
            return []
        reps = [self.shared] if isinstance(self.shared, Tensor) else list(self.shared)
        return [z for z in reps if z.requires_grad]

    def parameters(self) -> list[Tensor]:
        return [p for p in self.shared_params if p.requires_grad]

    def gradient_targets(self, on: GradientSpace = "representation") -> tuple[list[Tensor], bool]:
        """Tensors gradient methods differentiate against, and whether they are per-sample.

        ``representation``: the shared representation(s) (the MGDA-UB trick: per-task gradients
        cost a backward through the task-specific part only), falling back to the shared
        parameters when none was captured; ``shared_parameters``: the shared parameters (the
        papers' setting for PCGrad and CAGrad: the update is then conflict-averse in parameter
        space). Each falls back to the other when it is empty (no representation captured; no
        dense shared parameter, e.g. an encoder of sparse-gradient tables only).
        """
        reps, params = self.representations(), self.parameters()
        if reps and (on == "representation" or not params):
            return reps, True
        if not params:
            raise RuntimeError("gradient balancing needs a shared representation or shared parameters; got neither")
        return params, False


class Balancer(nn.Module, ABC):
    """Combines the (T,) vector of task losses into the scalar the optimizer minimises.

    Call the strategy (``balancer(losses, ctx)``): it runs :meth:`combine` and watches the
    weights for collapse. A strategy may own learnable parameters (they join the optimizer,
    being a submodule of the LightningModule) and may react to validation losses
    (:meth:`on_validation_end`). :attr:`last_weights` (T,) holds the effective per-task weights
    of the latest step on the "sum" scale (all ones = equal weighting), for logging.
    """

    Config: ClassVar[type[BalancerConfig]] = BalancerConfig
    #: losses the training loop hands to :meth:`after_step` after each optimizer step:
    #: ``same_batch`` (the step's batch re-evaluated with the updated model: FAMO),
    #: ``validation_batch`` (a sampled validation batch: CoBa), or None
    post_step: ClassVar[Literal["same_batch", "validation_batch"] | None] = None
    #: ``last_weights`` never change after construction (equal, static): the collapse watch then
    #: counts steps on the host instead of ~6 tensor ops and a host read per step (~1 % of a census step)
    constant_weights: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str], config: BalancerConfig):
        super().__init__()
        self.task_names = list(task_names)
        self.config = config
        T = len(self.task_names)
        self.register_buffer("last_weights", torch.ones(T), persistent=False)
        self.register_buffer("_low_steps", torch.zeros(T, dtype=torch.long), persistent=False)
        self._warned: set[str] = set()
        self._steps_watched = 0  # steps seen by the collapse watch of constant weights

    def register_history(self, name: str, value: Tensor) -> None:
        """A persistent buffer whose shape changes during training (histories): checkpoints hold
        plain tensors only, and loading resizes the buffer to the saved shape."""
        self.register_buffer(name, value)
        self._resizable = (*getattr(self, "_resizable", ()), name)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # type: ignore[no-untyped-def]
        for name in getattr(self, "_resizable", ()):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                current = self._buffers[name]
                self._buffers[name] = torch.empty(saved.shape, dtype=current.dtype, device=current.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    @abstractmethod
    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """(T,) task losses → scalar loss."""

    def forward(self, losses: Tensor, ctx: StepContext) -> Tensor:  # type: ignore[override]
        total = self.combine(losses, ctx)
        self._watch_collapse()
        return total

    def on_validation_end(self, val_losses: Tensor, epoch: int) -> None:
        """Hook for strategies driven by full validation passes; (T,) exact mean losses."""

    def after_step(self, losses: Tensor, step: int) -> None:
        """(T,) detached losses of the kind :attr:`post_step` names, after optimizer step ``step``."""

    def validation_batches(self) -> int:
        """How many validation batches ``post_step = "validation_batch"`` averages per step."""
        return 1

    def has_reference(self) -> bool:
        """Whether the full-validation reference losses (:meth:`set_reference`) are known."""
        return True

    def set_reference(self, val_losses: Tensor) -> None:
        """(T,) exact validation losses before training, for ``validation_batch`` strategies."""

    def steps_optimizer(self) -> bool:
        """Asked before a batch's training step: does the optimizer step after this batch?
        Strategies that accumulate several batches into one update (GCond) say no until the
        last batch of their window; the gradients then add up in ``.grad``."""
        return True

    def zeroes_gradients(self) -> bool:
        """Asked after a batch's training step, before its backward: clear ``.grad`` first?"""
        return True

    def weight_dict(self) -> dict[str, float]:
        """Per-task weights (and any strategy-specific scalars) for the run's logs."""
        return {n: float(w) for n, w in zip(self.task_names, self.last_weights)}

    def diagnostics(self) -> dict[str, float]:
        """Strategy-specific scalars for the logs (e.g. PCGrad's conflict rate); none by default."""
        return {}

    def _watch_collapse(self) -> None:
        window = self.config.collapse_window
        if self.constant_weights:
            # the same weights at every step: a low one is low at every step, so its count reaches the
            # window exactly at step ``window``; counted on the host, the weights tested once there
            self._steps_watched += 1
            if self._steps_watched != window:
                return
            w = self.last_weights.detach().float()
            self._low_steps.copy_((w < self.config.collapse_ratio * w.mean().clamp_min(1e-12)) * window)
        else:
            # counted on the device without a host sync; only read back when a window could be full
            w = self.last_weights.detach().float()
            low = w < self.config.collapse_ratio * w.mean().clamp_min(1e-12)
            self._low_steps.copy_((self._low_steps.to(w.device) + 1) * low)
        if int(self._low_steps.max()) < window:
            return
        for name, n in zip(self.task_names, self._low_steps.tolist()):
            if n >= window and name not in self._warned:
                self._warned.add(name)
                msg = (
                    f"balancing {type(self).__name__}: task {name!r} weight has stayed below "
                    f"{self.config.collapse_ratio:g} × mean for {n} steps (weights {self.weight_dict()})"
                )
                log.warning(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)


BALANCERS: Registry[Balancer] = Registry("balancing method", "balancing")


def build_balancer(name: str, params: dict[str, Any], task_names: Sequence[str]) -> Balancer:
    return BALANCERS.get(name)(task_names, BALANCERS.config(name, params))  # type: ignore[call-arg]
