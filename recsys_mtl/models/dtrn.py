"""DTRN-style task-specific bottoms under any expert model: the ``dtrn`` wrapper.

``model: {name: dtrn, params: {inner: {name: mmoe, params: {...}}, reduction: 4}}`` gives every
task its own SENet-reweighted view of the shared feature embeddings
(:class:`recsys_mtl.nn.bottoms.TaskSENet`), then runs the inner model on each view and keeps, for
task t, the inner model's representation for task t.

Why a wrapper and not a flag on every model: a task-specific bottom changes what the shared part
of the inner model sees (T inputs instead of one), which only the inner model's
``task_inputs(x)`` contract is needed for; a wrapper composes with every model that implements it
(Shared-Bottom, MMoE, OMoE, PLE, HoME, AdaTT, …) without an edit to any of them or to the base
class. The T views are stacked along the batch axis, so the inner model runs once on (T·B, D)
rows. Models that work on tokens or on their own embeddings (multitab, ft_transformer, stem) or
that chain task outputs (esmm) are refused with a SpecError.

Only DTRN's representation-refinement part (per-task SENet) is implemented; its task-specific
interest module (a hypernetwork over behaviour sequences) is not.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.models.registry import build_model, register
from recsys_mtl.nn.bottoms import TaskSENet


class InnerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict = {}


class DTRNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inner: InnerModel = InnerModel(name="mmoe")
    reduction: int = Field(4, ge=1)


@register("dtrn")
class DTRN(MultiTaskModel):
    """Per-task SENet bottoms in front of an inner expert model.

    Batch → fields (categorical / pooled sequence embeddings, one field per numeric column) →
    (B, D) → TaskSENet → (T, B, D) → inner ``task_inputs`` on (T·B, D) → task t keeps rows
    t·B … (t+1)·B of its representation → inner towers.

    | param | default | meaning |
    |---|---|---|
    | inner | {name: mmoe, params: {}} | the expert model to put the bottoms under (any model using `task_inputs`) |
    | reduction | 4 | SENet bottleneck: F fields → max(1, F // reduction) → F |

    Towers, dropout and activation are the inner model's parameters.
    """

    Config = DTRNConfig  # type: ignore[assignment]

    def __init__(self, context: ModelContext, config: DTRNConfig):
        super().__init__(context, config)  # type: ignore[arg-type]
        try:
            self.inner = build_model(config.inner.name, config.inner.params, context)
        except SpecError as exc:
            raise SpecError(f"model.params.inner: {exc}") from None
        if not wraps_task_inputs(type(self.inner)):
            raise SpecError(
                f"model.params.inner.name: {config.inner.name!r} has its own forward (tokens, own "
                "embeddings or chained outputs), so it cannot take task-specific bottoms"
            )
        self.encoder = self.inner.encoder  # the shared embeddings are the inner model's
        self.towers = self.inner.towers
        enc = self.encoder
        self.bottom = TaskSENet(enc.field_dims, len(self.task_names), config.reduction)

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        """(B, D) → per-task (B, H_t): task t's SENet view through the inner model, task t's rows."""
        t, b = len(self.task_names), x.shape[0]
        views = self.bottom(x)  # (T, B, D)
        reps = self.inner.task_inputs(views.reshape(t * b, -1))  # T × (T·B, H)
        return [r.reshape(t, b, -1)[i] for i, r in enumerate(reps)]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.inner.towers(self.task_inputs(self.encoder(batch)))

    def shared_modules(self) -> list[nn.Module]:
        """None: the inner model's shared blocks run on task-specific views (task t reads rows
        t·B … (t+1)·B only), so per-task gradients of their outputs never overlap and a
        representation-level method could see no conflict. Gradient methods therefore use the
        inner model's shared parameters, which every view goes through."""
        return []

    def shared_parameters(self) -> list[nn.Parameter]:
        return self.inner.shared_parameters()
