"""Preference-weighted loss for preference-conditioned models (see :mod:`recsys_mtl.models.preference`),
with COSMOS's cosine term (Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep
Multi-Objective Learning", ICDM 2021, Eq. 4; reference code ``ruchtem/cosmos``,
``multi_objective/methods/cosmos/cosmos.py``):

    L = Σ_t p_t·L_t − λ·cos(p, L)

The cosine between the preference ray and the loss vector pulls each conditioned solution towards
its ray, spreading the front; λ = 0 is plain linear scalarisation (YOTO's loss).

Per-row preferences. The reference draws one ray per batch (``np.random.dirichlet(alpha, 1)``,
repeated over the batch's rows) and scales the batch-mean task losses by it; the model does the
same when the batch carries no ``preference``. When it does (B, T) rows — e.g. preferences that
come with the data — each row's loss is weighted by its own ray, with ℓ_bt the row losses, w_bt
the label mask × row weight and p_bt the rows' preferences:

    linear term  Σ_t Σ_b p_bt·w_bt·ℓ_bt / Σ_b w_bt      (each task normalised by its labelled rows)
    cosine term  Σ_g n_g·cos(p_g, L_g) / B              (g: the batch's distinct rays, n_g rows each)

with L_g the masked mean losses of the rows holding ray g. With one ray in the batch both reduce
to the reference's ``Σ_t p_t L_t − λ·cos(p, L)`` exactly.

Deviations:

- λ defaults to 0 (the paper tunes it per dataset, with no general default), so the term is opt-in;
- per-row rays (above) are an extension: the reference never has more than one ray per batch; the
  cosine is taken per distinct ray against the losses of that ray's rows (a row's "loss vector"
  under its own ray), averaged with the rows' share;
- with the step's row losses, a task no row of a ray's group labels is left out of that group's
  cosine (both vectors), where the reference (no masks) always has every task; without them
  (``StepContext.rows`` None, unit tests) the batch's single ray meets the (T,) losses as in the
  reference.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.errors import SpecError


class PreferenceConfig(BalancerConfig):
    cosine_weight: float = Field(0.0, ge=0)
    """λ of COSMOS's cosine term −λ·cos(p, L) (0 = linear scalarisation only)"""


def row_weighted(prefs: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
    """Linear term: (B, T) preferences, row losses and row weights → Σ_t Σ_b p·w·ℓ / Σ_b w."""
    return ((prefs * weights * rows).sum(0) / weights.sum(0).clamp_min(1e-12)).sum()


def ray_cosine(prefs: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
    """Cosine term: mean over rows of cos(p_g, L_g) of each row's ray g; (B, T) inputs → ()."""
    rays, group = torch.unique(prefs, dim=0, return_inverse=True)  # (G, T), (B,)
    G, T = rays.shape
    w_sum = torch.zeros(G, T, dtype=rows.dtype, device=rows.device).index_add_(0, group, weights.to(rows.dtype))
    l_sum = torch.zeros(G, T, dtype=rows.dtype, device=rows.device).index_add_(0, group, weights * rows)
    labelled = (w_sum > 0).to(rows.dtype)
    means = l_sum / w_sum.clamp_min(1e-12)
    cos = F.cosine_similarity(rays * labelled, means * labelled, dim=1, eps=1e-12)  # (G,)
    share = torch.bincount(group, minlength=G).to(rows.dtype)
    return (share * cos).sum() / share.sum()


@BALANCERS.register("preference")
class PreferenceWeights(Balancer):
    """``Σ_t p_t·L_t − λ·cos(p, L)`` with ``p`` the preference the model used for this batch, per
    row when the rows carry different ones (see the module docstring).

    Pairs with ``model.name: preference``; the logged weights are ``T·p̄`` (p̄ the rows' mean; all
    ones = equal).
    """

    Config = PreferenceConfig

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        mean = getattr(ctx.model, "last_preference", None)
        if mean is None:
            raise SpecError("balancing.name: 'preference' needs a preference-conditioned model (model.name: preference)")
        mean = mean.to(losses.device, losses.dtype)
        prefs = getattr(ctx.model, "last_preference_rows", None)
        self.last_weights = (mean * len(self.task_names)).detach()
        lam = self.config.cosine_weight  # type: ignore[attr-defined]
        if ctx.rows is None:
            if prefs is not None and not bool((prefs == prefs[:1]).all()):
                raise RuntimeError("balancing 'preference': the rows carry different preferences, which needs the "
                                   "step's per-row losses (StepContext.rows); the training module passes them")
            total = (losses * mean).sum()
            return total - lam * F.cosine_similarity(mean, losses, dim=0, eps=1e-12) if lam > 0 else total
        rows, weights = ctx.rows
        weights = weights.to(rows.dtype)
        prefs = (mean.expand(rows.shape[0], -1) if prefs is None else prefs).to(rows.device, rows.dtype)
        if prefs.shape != rows.shape:
            raise RuntimeError(f"balancing 'preference': the model's preferences {tuple(prefs.shape)} do not match "
                               f"the step's row losses {tuple(rows.shape)}")
        total = row_weighted(prefs, rows, weights)
        return total - lam * ray_cosine(prefs, rows, weights) if lam > 0 else total
