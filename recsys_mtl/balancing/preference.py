"""Preference-weighted loss for preference-conditioned models (see :mod:`recsys_mtl.models.preference`),
with COSMOS's cosine term (Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep
Multi-Objective Learning", ICDM 2021, Eq. 4):

    L = Σ_t p_t·L_t − λ·cos(p, L)

The cosine between the preference ray and the loss vector pulls each conditioned solution towards
its ray, spreading the front; λ = 0 is plain linear scalarisation (YOTO's loss).

Deviations: λ defaults to 0 (the paper tunes it per dataset, with no general default), so the
term is opt-in; the batch's preference is the model's batch-mean ``p`` (one draw per batch, as in
the papers' training).
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.errors import SpecError


class PreferenceConfig(BalancerConfig):
    cosine_weight: float = Field(0.0, ge=0)
    """λ of COSMOS's cosine term −λ·cos(p, L) (0 = linear scalarisation only)"""


@BALANCERS.register("preference")
class PreferenceWeights(Balancer):
    """``Σ_t p_t·L_t − λ·cos(p, L)`` with ``p`` the (T,) preference the model drew for this batch.

    Pairs with ``model.name: preference``; the logged weights are ``T·p`` (all ones = equal).
    """

    Config = PreferenceConfig

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        pref = getattr(ctx.model, "last_preference", None)
        if pref is None:
            raise SpecError("balancing.name: 'preference' needs a preference-conditioned model (model.name: preference)")
        pref = pref.to(losses.device, losses.dtype)
        self.last_weights = (pref * len(self.task_names)).detach()
        total = (losses * pref).sum()
        lam = self.config.cosine_weight  # type: ignore[attr-defined]
        if lam > 0:
            total = total - lam * F.cosine_similarity(pref, losses, dim=0, eps=1e-12)
        return total
