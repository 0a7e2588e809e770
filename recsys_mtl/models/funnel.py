"""Funnel models for stages declared in the spec (``after: <earlier task>``): ESMM and AITM.

A task with ``after: ctr`` (say ``ctcvr``) is an event that can only follow ``ctr``; its label is
over the entire space (1 = click and conversion). Both models output, for every task, a logit of
the *joint* probability, so the training loss stays BCE-with-logits on the spec's labels:

- **ESMM** (Ma et al., SIGIR 2018): p(ctcvr) = p(ctr) · p(cvr), with p(cvr) from its own tower,
  trained only through the ctr and ctcvr losses on all impressions (the entire space); the
  conditional p(cvr) is never fitted on clicked rows alone, which is ESMM's answer to
  sample-selection bias. :meth:`ESMM.conditional_logits` gives the per-stage (cvr) logits.
- **AITM** (Xi et al., KDD 2021): each stage's tower representation receives information from its
  previous stage through an Adaptive Information Transfer (attention over the transferred vector
  and its own vector); a calibrator loss ``α · mean(max(p_t − p_prev, 0))`` keeps a later stage's
  probability below its previous stage's. The calibrator enters training through
  :meth:`MultiTaskModel.auxiliary_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.nn.named import NamedModuleDict
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.spec.features import Task


def funnel_parents(tasks: list[Task] | tuple[Task, ...], model: str) -> list[int | None]:
    """Index of each task's previous stage (None for a first stage); a funnel model needs one stage."""
    index = {t.name: i for i, t in enumerate(tasks)}
    parents = [index[t.after] if t.after is not None else None for t in tasks]
    if all(p is None for p in parents):
        raise SpecError(
            f"model {model!r} needs a funnel in the spec: give a later task 'after: <earlier task>' "
            f"(tasks: {', '.join(index)})"
        )
    return parents


def chain_logit(prev_logit: Tensor, own_logit: Tensor) -> Tensor:
    """Logit of σ(prev) · σ(own), exactly and stably.

    With p = σ(a)·σ(b): p / (1 − p) = e^(a+b) / (1 + e^a + e^b), so
    logit(p) = a + b − logsumexp(0, a, b). This equals ``log p − log1mexp(log p)`` with
    ``log p = logsigmoid(a) + logsigmoid(b)`` but needs no branch and stays finite for any a, b
    (and exports as one ReduceLogSumExp node).
    """
    zero = torch.zeros_like(prev_logit)
    return prev_logit + own_logit - torch.logsumexp(torch.stack([zero, prev_logit, own_logit], dim=-1), dim=-1)


class ESMMConfig(ModelConfig):
    tower_hidden: list[int] = Field(default_factory=lambda: [128, 64])
    """per-stage tower widths (the paper used 360-200-80-2)"""


@register("esmm")
class ESMM(FlatInputModel):
    """Entire Space Multi-task Model: a shared embedding and one MLP tower per stage.

    Encoded batch (B, D) → tower t → own logit a_t (B,). A first stage returns a_t; a stage with
    ``after: s`` returns ``chain_logit(logit_s, a_t)``, the logit of p(s) · σ(a_t). Embedding
    tables are shared by all towers, as in the paper; the towers share nothing else.
    """

    Config = ESMMConfig

    def __init__(self, context: ModelContext, config: ESMMConfig):
        super().__init__(context, config)
        self.parents = funnel_parents(list(context.tasks), "esmm")
        self.build_towers([self.encoder.output_dim] * len(self.task_names))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        return [x] * len(self.task_names)

    def conditional_logits(self, batch: Batch) -> dict[str, Tensor]:
        """Each tower's own logit: p(stage | previous stage) for funnel stages (the CVR of ESMM)."""
        return self.towers(self.task_inputs(self.encoder(batch)))

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        own = self.conditional_logits(batch)
        out: dict[str, Tensor] = {}
        for name, parent in zip(self.task_names, self.parents):
            out[name] = own[name] if parent is None else chain_logit(out[self.task_names[parent]], own[name])
        return out


class AITModule(nn.Module):
    """Adaptive Information Transfer: attention over {transferred p, own q}, each (B, d) → (B, d).

    w_u ∝ exp(<h1(u), h2(u)> / √d) over u ∈ {p, q}; output Σ_u w_u · h3(u); h1..h3 are linear
    maps, as in the paper.
    """

    def __init__(self, d: int):
        super().__init__()
        self.h1, self.h2, self.h3 = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.scale = 1.0 / math.sqrt(d)
        self.last_weights: Tensor | None = None

    def forward(self, p: Tensor, q: Tensor) -> Tensor:
        u = torch.stack([p, q], dim=1)  # (B, 2, d)
        w = torch.softmax((self.h1(u) * self.h2(u)).sum(-1) * self.scale, dim=1)  # (B, 2)
        self.last_weights = w.detach()
        return (w.unsqueeze(-1) * self.h3(u)).sum(dim=1)


class AITMConfig(ModelConfig):
    bottom_hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    """per-task representation MLP; the last width H is the AIT width"""
    tower_hidden: list[int] = Field(default_factory=lambda: [32])
    """per-task tower on z_t"""
    transfer_hidden: list[int] = Field(default_factory=list)
    """hidden widths of the transfer MLP z_s → p_t (ends with a Linear to H)"""
    calibrator_weight: float = Field(0.6, ge=0.0)
    """α of the calibrator loss (0 disables it)"""


@register("aitm")
class AITM(FlatInputModel):
    """Adaptive Information Transfer Multi-task model.

    Per task t: q_t = bottom_t(x) (B, H); a first stage keeps z_t = q_t; a stage after s gets
    p_t = transfer_t(z_s) and z_t = AIT_t(p_t, q_t); logit_t = tower_t(z_t). Logits are of the
    joint event (the spec's entire-space label), so no chaining is applied: the calibrator loss
    α · Σ_stages mean_rows(max(σ(logit_t) − σ(logit_s), 0)) pushes p_t ≤ p_s instead (AITM's
    behavioural expectation calibrator), added via :meth:`auxiliary_loss` during training.
    """

    Config = AITMConfig

    def __init__(self, context: ModelContext, config: AITMConfig):
        super().__init__(context, config)
        self.parents = funnel_parents(list(context.tasks), "aitm")
        d_in = self.encoder.output_dim
        self.bottoms = nn.ModuleList(
            MLP(d_in, config.bottom_hidden, config.activation, config.dropout) for _ in self.task_names
        )
        h = config.bottom_hidden[-1]
        staged = [self.task_names[i] for i, p in enumerate(self.parents) if p is not None]
        self.transfers = NamedModuleDict({name: self._transfer(h, config) for name in staged})
        self.ait = NamedModuleDict({name: AITModule(h) for name in staged})
        self.build_towers([h] * len(self.task_names))
        self.calibrator_weight = config.calibrator_weight
        self._auxiliary: Tensor | None = None

    @staticmethod
    def _transfer(h: int, config: AITMConfig) -> nn.Module:
        mlp = MLP(h, config.transfer_hidden, config.activation)
        return nn.Sequential(mlp, nn.Linear(mlp.out_dim, h))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        z: list[Tensor] = []
        for name, bottom, parent in zip(self.task_names, self.bottoms, self.parents):
            q = bottom(x)
            z.append(q if parent is None else self.ait[name](self.transfers[name](z[parent]), q))
        return z

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        out = self.towers(self.task_inputs(self.encoder(batch)))
        self._auxiliary = self._calibrator(out) if self.training and self.calibrator_weight > 0 else None
        return out

    def _calibrator(self, logits: dict[str, Tensor]) -> Tensor:
        terms = [
            F.relu(torch.sigmoid(logits[name]) - torch.sigmoid(logits[self.task_names[parent]])).mean()
            for name, parent in zip(self.task_names, self.parents)
            if parent is not None
        ]
        return self.calibrator_weight * torch.stack(terms).sum()

    def auxiliary_loss(self) -> Tensor | None:
        return self._auxiliary
