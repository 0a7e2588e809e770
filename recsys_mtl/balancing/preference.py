"""Preference-weighted loss for preference-conditioned models (see :mod:`recsys_mtl.models.preference`)."""

from __future__ import annotations

from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, StepContext
from recsys_mtl.errors import SpecError


@BALANCERS.register("preference")
class PreferenceWeights(Balancer):
    """``Σ_t p_t·L_t`` with ``p`` the (T,) preference the model drew for this batch.

    Pairs with ``model.name: preference``; the logged weights are ``T·p`` (all ones = equal).
    """

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        pref = getattr(ctx.model, "last_preference", None)
        if pref is None:
            raise SpecError("balancing.name: 'preference' needs a preference-conditioned model (model.name: preference)")
        pref = pref.to(losses.device, losses.dtype)
        self.last_weights = (pref * len(self.task_names)).detach()
        return (losses * pref).sum()
