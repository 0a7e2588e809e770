"""A seed ensemble inside one graph: K members of a flat-input family, their logits averaged.

Deep ensembles (Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty Estimation
using Deep Ensembles", NeurIPS 2017): K copies of one network from different random
initialisations, trained on the same loss, predictions averaged. Here the average is taken **in
logit space** (binary log-odds, multiclass logits, regression values), so the ensemble is one
``{task: logits}`` model like any other: trained by the same step, selected on validation by the
same checkpoint callback, exported as **one ONNX graph** (every member inside it).

With ``encoder.gbdt_leaves`` every member's encoder gets the same fitted trees (one fit), the
training step reads their precomputed leaves once, and with ``margin: true`` each member adds the
trees' score: the average is ``margin + mean_k(network_k)``, the trees plus an averaged residual.

Deviations from the paper: the members are trained jointly on the sum of their averaged logits'
loss (one optimizer, one data order; the paper trains each member separately on its own shuffle
and averages probabilities); they differ by initialisation only (drawn one after another from the
run's seeded generator), and their checkpoint is selected together on the ensemble's validation
metric. No adversarial training.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.models.registry import MODELS, build_model, register


class EnsembleConfig(ModelConfig):
    base: str = "mmoe"
    """the members' family (any flat-input model); the ensemble's own tower_hidden, dropout and
    activation are unused: the members' own (in base_params) apply"""
    base_params: dict[str, Any] = Field(default_factory=dict)
    """the members' parameters"""
    members: int = Field(3, ge=2)
    """K, the members averaged in logit space"""


@register("ensemble")
class EnsembleModel(MultiTaskModel):
    """K members of one flat-input family, (B,) / (B, C) logits averaged over members."""

    Config = EnsembleConfig
    encoder_options = FlatInputModel.encoder_options
    adds_logit_options = True  # the members add the wide part and the trees' margin themselves

    def __init__(self, context: ModelContext, config: EnsembleConfig):
        super().__init__(context, config)
        if config.base == "ensemble" or not wraps_task_inputs(MODELS.get(config.base)):
            raise SpecError(f"model.params.base: {config.base!r} is not a flat-input family "
                            "(encoder → task_inputs → towers); use e.g. mmoe, ple, home, adatt")
        self.members = nn.ModuleList([build_model(config.base, config.base_params, context) for _ in range(config.members)])
        # the training step reads the regression targets' scale from model.towers (every member's is the same)
        self.towers = self.members[0].towers

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        outs = [m(batch) for m in self.members]
        return {name: torch.stack([o[name] for o in outs]).mean(0) for name in self.task_names}

    def shared_modules(self) -> list[nn.Module]:
        """Every member's shared representation (each member's tasks share it; members share nothing)."""
        return [s for m in self.members for s in m.shared_modules()]

    def auxiliary_loss(self) -> Tensor | None:
        terms = [t for m in self.members if (t := m.auxiliary_loss()) is not None]
        return torch.stack(terms).mean() if terms else None
