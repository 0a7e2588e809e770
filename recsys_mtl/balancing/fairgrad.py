"""FairGrad: fair resource allocation in multi-task learning (Ban & Ji, ICML 2024).

Reference code: github.com/OptMN-Lab/fairgrad and LibMTL's ``FairGrad`` port. Each step solves the
α-fair allocation: weights w > 0 with ``(G Gᵀ w)_t = w_t^(−1/α)`` (the paper's optimality condition
of max Σ_t u_t^(1−α)/(1−α) over the improvements u_t = g_tᵀd), then back-propagates Σ_t w_t L_t.
α = 1 is proportional fairness (Nash-MTL's condition, without its normalisation and clipping);
α → ∞ approaches max-min fairness. Reference default α = 1.0.

Deviations:

- the equation is solved exactly by damped Newton steps on its convex potential
  (:mod:`recsys_mtl.balancing.alpha_fair`) instead of ``scipy.optimize.least_squares`` from
  w = 1/T; both target the same unique root;
- a task with a zero gradient this step (no labelled row) gets w = 0, where the reference's
  least-squares would push it to its upper bound;
- ``on: representation`` is offered as the cheaper option; the default, as in the reference
  (which refuses representation gradients), is the shared parameters.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.alpha_fair import alpha_fair_weights
from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import GradientBalancer, ParameterGradientConfig


class FairGradConfig(ParameterGradientConfig):
    alpha: float = Field(1.0, gt=0)
    """the fairness parameter α of the α-fair utility (1 = proportional fairness)"""


@BALANCERS.register("fairgrad")
class FairGrad(GradientBalancer):
    """Shared-part gradient = Σ_t w_t g_t with the α-fair weights. Logs w."""

    Config = FairGradConfig

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: FairGradConfig = self.config  # type: ignore[assignment]
        return alpha_fair_weights(K, cfg.alpha)
