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

Liu et al., "Deep Task-specific Bottom Representation Network for Multi-Task Recommendation"
(CIKM 2023) has two parts, both here: the task representation refinement (per-task SENet, always
on) and, with ``interest: {...}``, the task-specific interest module
(:mod:`recsys_mtl.nn.interest`): a hypernetwork turns (task, behaviour type) embeddings into the
layer-norm parameters of one transformer over each behaviour sequence, so each task gets its own
interest vector per sequence, which replaces the shared pooled sequence field in that task's view
before the SENet. It applies to every sequence feature of the spec; each conditioned encoding is
pooled by that sequence's own spec pooling (DIN target attention towards the candidate when the
sequence declares a query, else mean / sum / max). The sequences share the transformer, so they
must share one embedding width. Refused (SpecError) without sequence features, and with an inner
cross network (the interest vectors would have to enter before it).
"""

from __future__ import annotations

from pydantic import Field
import torch
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.models.registry import build_model, register
from recsys_mtl.nn.bottoms import TaskSENet
from recsys_mtl.nn.cross_network import CrossedEncoder
from recsys_mtl.nn.interest import InterestConfig, TaskInterest
from recsys_mtl.strict import ParamsModel


class InnerModel(ParamsModel):
    name: str
    """the inner model's registered name"""
    params: dict = {}
    """the inner model's parameters"""


class DTRNConfig(ParamsModel):
    inner: InnerModel = InnerModel(name="mmoe")
    """the expert model to put the bottoms under (any model using `task_inputs`)"""
    reduction: int = Field(4, ge=1)
    """SENet bottleneck: F fields → max(1, F // reduction) → F"""
    interest: InterestConfig | None = None
    """task-specific interest module over the behaviour sequences: `{embedding_dim: 8, hyper_hidden: [32], num_layers: 1,
    num_heads: 1, ffn_hidden: 32, dropout: 0, positions: false}` (null: off)
    """


@register("dtrn")
class DTRN(MultiTaskModel):
    """Per-task SENet bottoms (and, optionally, per-task interest vectors) in front of an inner expert model.

    Batch → fields (categorical / pooled sequence embeddings, one field per numeric column) →
    (B, D) → TaskSENet → (T, B, D) → inner ``task_inputs`` on (T·B, D) → task t keeps rows
    t·B … (t+1)·B of its representation → inner towers. With ``interest``, each sequence field
    of the (T, B, D) views is task t's interest vector (B, d) from :class:`TaskInterest` and
    the SENet reweights each task's own view.

    Towers, dropout and activation are the inner model's parameters.
    """

    Config = DTRNConfig  # type: ignore[assignment]
    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding", "gbdt_leaves", "cross", "id_counts"}

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
        self.interest = self._interest(config.interest) if config.interest is not None else None

    def _interest(self, cfg: InterestConfig) -> TaskInterest:
        enc, layout = self.encoder, self.context.layout
        if not enc.sequences:
            raise SpecError("model.params.interest: the spec has no sequence features to extract interests from")
        if isinstance(enc, CrossedEncoder):
            raise SpecError("model.params.interest: cannot be combined with the inner model's cross network")
        widths = {name: layout.tables[table][1] for name, table, _, _ in layout.sequences}
        if len(set(widths.values())) > 1:
            raise SpecError(f"model.params.interest: the sequences share one conditional transformer, so they need one "
                            f"embedding_dim; got {widths}")
        try:
            return TaskInterest(next(iter(widths.values())), len(self.task_names), [m for _, _, m, _ in layout.sequences], cfg)
        except ValueError as exc:
            raise SpecError(f"model.params.interest: {exc}") from None

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        """(B, D) → per-task (B, H_t): task t's SENet view through the inner model, task t's rows."""
        return self._represent(self.bottom(x))

    def _represent(self, views: Tensor) -> list[Tensor]:
        """(T, B, D) task views → per-task (B, H_t): the inner model on (T·B, D), task t's rows."""
        t, b = views.shape[:2]
        reps = self.inner.task_inputs(views.reshape(t * b, -1))  # T × (T·B, H)
        return [r.reshape(t, b, -1)[i] for i, r in enumerate(reps)]

    def interest_fields(self, batch: Batch) -> Tensor:
        """Encoded batch → (T, B, D): the encoder's fields with each sequence field replaced by
        task t's interest vector (the sequences follow the categorical block, as in ``forward``)."""
        enc, interest = self.encoder, self.interest
        assert interest is not None
        parts, cat = enc.fields(batch, sequences=False)
        t, b = len(self.task_names), cat.shape[0]
        seqs = []
        for i, (key, table, _) in enumerate(enc.sequences):
            idx = enc.seq_dropout.column(batch[key], i) if self.training else batch[key]
            h = interest(enc.embeddings[table](idx), idx, i)  # (T, B, L, d)
            pooled = enc.pool_sequence(i, h.flatten(0, 1), idx.repeat(t, 1), cat.repeat(t, 1))  # (T·B, d)
            seqs.append(pooled.view(t, b, -1))
        shared = [p.unsqueeze(0).expand(t, -1, -1) for p in parts]
        head = 1 if enc.cat_tables else 0
        return torch.cat(shared[:head] + seqs + shared[head:], dim=-1)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        if self.interest is None:
            return self.inner.towers(self.task_inputs(self.encoder(batch)))
        return self.inner.towers(self._represent(self.bottom(self.interest_fields(batch))))

    def shared_modules(self) -> list[nn.Module]:
        """None: the inner model's shared blocks run on task-specific views (task t reads rows
        t·B … (t+1)·B only), so per-task gradients of their outputs never overlap and a
        representation-level method could see no conflict. Gradient methods therefore use the
        inner model's shared parameters, which every view goes through."""
        return []

    def shared_parameters(self) -> list[nn.Parameter]:
        """The inner model's, and the interest module's transformer and hypernetwork (every task's
        interest vectors go through them; the task embeddings are each task's own)."""
        own = self.interest.shared_parameters() if self.interest is not None else []
        return self.inner.shared_parameters() + own
