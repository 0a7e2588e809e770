"""Preference-conditioned multitask model: one network for the whole trade-off front.

Any flat-input family (one whose forward is encoder → ``task_inputs`` → towers: shared_bottom,
omoe, mmoe, ple, cgc, home, adatt, ...) is wrapped and conditioned on a task preference vector
``p`` on the simplex (T,), following the conditioned one-shot Pareto-front recipe (Ruchte &
Grabocka, "Scalable Pareto Front Approximation for Deep Multi-Objective Learning", ICDM 2021;
Dosovitskiy & Djolonga, "You Only Train Once", ICLR 2020):

- training: one ``p ~ Dirichlet(alpha)`` per batch, the loss is ``Σ_t p_t·L_t`` minus, with
  ``balancing.params.cosine_weight`` λ > 0, COSMOS's cosine term ``λ·cos(p, L)`` (the
  ``preference`` balancing method reads ``p`` from the model; on the sum scale it logs ``T·p``);
- conditioning: FiLM (Perez et al., AAAI 2018) of the shared representation — the encoded input
  — and of each task's tower input: ``h ⊙ (1 + γ(p)) + β(p)`` with γ, β from a small MLP of ``p``,
  initialised at zero so training starts from the unconditioned base model;
- serving: ``p`` is an input of the exported graph (``preference``, (B, T) float32, one row per
  request row), with the default (``default_preference``, else uniform) in the export metadata,
  so a ranking team moves along the front without retraining.

Deviation from the papers: they condition by concatenating ``p`` to the input (COSMOS) or with
per-layer FiLM over the whole network (YOTO); here FiLM acts at two points only — the shared
representation and the tower inputs — because those two are common to every wrapped family.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import ModelConfig, ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.models.registry import MODELS, build_model, register
from recsys_mtl.nn.blocks import MLP

#: batch key (and exported graph input) carrying the (B, T) preference rows
PREFERENCE = "preference"


class PreferenceConfig(ModelConfig):
    base: str = "mmoe"
    """wrapped family (any flat-input model)"""
    base_params: dict[str, Any] = Field(default_factory=dict)
    """the wrapped family's parameters"""
    alpha: float | list[float] = 1.0
    """Dirichlet concentration of the training preferences: one value for every task or one per task"""
    default_preference: list[float] | None = None
    """preference used when none is given (evaluation, serving default); null = uniform"""
    film_hidden: list[int] = Field(default_factory=lambda: [32])
    """widths of the MLP that maps the preference to FiLM scales and shifts"""
    tower_hidden: list[int] = Field(default_factory=lambda: [32])
    """unused: the wrapped model's own (in ``base_params``) applies"""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """unused: the wrapped model's own (in ``base_params``) applies"""
    activation: str = "relu"
    """unused: the wrapped model's own (in ``base_params``) applies"""

    @field_validator("alpha")
    @classmethod
    def _positive(cls, v: float | list[float]) -> float | list[float]:
        if any(a <= 0 for a in ([v] if isinstance(v, float) else v)):
            raise ValueError("alpha must be > 0")
        return v


class FiLM(nn.Module):
    """(B, T) preference → (B, D) scale and shift applied as ``h ⊙ (1 + γ) + β`` to (B, D) ``h``."""

    def __init__(self, num_tasks: int, dim: int, hidden: list[int]):
        super().__init__()
        self.mlp = MLP(num_tasks, hidden, "relu")
        self.out = nn.Linear(self.mlp.out_dim, 2 * dim)
        nn.init.zeros_(self.out.weight)  # identity at start: the base model's behaviour
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, pref: Tensor) -> Tensor:
        gamma, beta = self.out(self.mlp(pref)).chunk(2, dim=-1)
        return h * (1.0 + gamma) + beta


@register("preference")
class PreferenceModel(MultiTaskModel):
    """A registered flat-input family conditioned on a task preference vector (FiLM).

    Train it with ``balancing: {name: preference}``. The batch may carry ``preference`` (B, T);
    without it the model draws one Dirichlet vector per batch in training and uses the default in
    evaluation. :attr:`last_preference` (T,) is the batch's mean preference, read by the balancer.
    """

    Config = PreferenceConfig
    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding", "gbdt_leaves", "cross", "id_counts"}

    def __init__(self, context: ModelContext, config: PreferenceConfig):
        super().__init__(context, config)
        T = len(self.task_names)
        if config.base == "preference" or not wraps_task_inputs(MODELS.get(config.base)):
            raise SpecError(f"model.params.base: {config.base!r} is not a flat-input family "
                            "(encoder → task_inputs → towers); wrap e.g. mmoe, ple, home, adatt")
        self.base = build_model(config.base, config.base_params, context)
        self.encoder = self.base.encoder  # one encoder, shared with the base model
        self.towers = self.base.towers
        alpha = config.alpha if isinstance(config.alpha, list) else [config.alpha] * T
        default = config.default_preference or [1.0 / T] * T
        for name, vec in (("alpha", alpha), ("default_preference", default)):
            if len(vec) != T:
                raise SpecError(f"model.params.{name}: needs {T} values (one per task), got {len(vec)}")
        if any(v < 0 for v in default) or sum(default) <= 0:
            raise SpecError("model.params.default_preference: needs non-negative values with a positive sum")
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32), persistent=False)
        self.register_buffer("default", torch.tensor(default, dtype=torch.float32) / sum(default), persistent=False)
        self.film_shared = FiLM(T, self.encoder.output_dim, config.film_hidden)
        with torch.no_grad():  # tower input widths, probed once on a zero row
            reps = self.base.task_inputs(torch.zeros(2, self.encoder.output_dim))
        self.film_towers = nn.ModuleList([FiLM(T, r.shape[-1], config.film_hidden) for r in reps])
        self.last_preference: Tensor = self.default.clone()

    def preference(self, batch: Batch, rows: int, like: Tensor) -> Tensor:
        """(B, T) preference rows of this forward: given, drawn (training) or the default."""
        if PREFERENCE in batch:
            return batch[PREFERENCE].to(like.dtype)
        if self.training:
            p = torch.distributions.Dirichlet(self.alpha).sample()
        else:
            p = self.default
        return p.to(like.dtype).expand(rows, -1)

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        pref = self.default.to(x.dtype).expand(x.shape[0], -1)
        return self._conditioned(x, pref)

    def _conditioned(self, x: Tensor, pref: Tensor) -> list[Tensor]:
        reps = self.base.task_inputs(self.film_shared(x, pref))
        return [film(r, pref) for film, r in zip(self.film_towers, reps)]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x = self.encoder(batch)
        pref = self.preference(batch, x.shape[0], x)
        self.last_preference = pref.detach().mean(0)
        return self.towers(self._conditioned(x, pref))

    def shared_module(self) -> nn.Module:
        return self.base.shared_module()

    def auxiliary_loss(self) -> Tensor | None:
        return self.base.auxiliary_loss()

    def condition_inputs(self) -> dict[str, Tensor]:
        """Extra graph inputs of an export and their defaults: ``preference`` → (T,)."""
        return {PREFERENCE: self.default.detach().cpu()}
