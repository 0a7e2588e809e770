"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022).

Reference code: github.com/AvivNavon/nash-mtl (``methods/weight_methods.py``, class ``NashMTL``) and
LibMTL's ``Nash_MTL`` port. The update is d = Σ_t α_t g_t with α the Nash bargaining solution, the
unique α > 0 with ``GᵀG α = 1/α`` (paper Eq. 2 / Claim 3.1; K = G Gᵀ in this package's notation),
solved on the Gram matrix normalised by its Frobenius norm as the reference does; the reference
then weights the losses by α and clips the shared parameters' gradient norm (``max_norm``).

Deviations:

- the bargaining equation is solved exactly by damped Newton steps on its convex potential
  (:mod:`recsys_mtl.balancing.alpha_fair`) instead of the reference's sequence of linearised
  convex programs (``optim_niter`` = 20 rounds of cvxpy/ECOS), so no cvxpy dependency; the
  reference's answer approximates this one;
- a task with a zero gradient this step (no labelled row) gets α = 0 instead of failing the solver;
- ``max_norm`` clips the combined direction on the gradient target (the shared parameters by
  default), as LibMTL's port does after its backward; the original code calls
  ``clip_grad_norm_`` before ``loss.backward()``, which leaves its update unclipped (``max_norm: 0``
  reproduces that); with ``on: representation`` the representation gradient is clipped instead;
- ``update_weights_every`` > 1 reuses the previous α between solves, like the reference, but
  still computes the per-task gradients each step (the surrogate needs them).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.alpha_fair import alpha_fair_weights
from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import GradientBalancer, ParameterGradientConfig


class NashMTLConfig(ParameterGradientConfig):
    update_weights_every: int = Field(1, ge=1)
    """solve the bargaining problem every this many steps (reference default 1)"""
    max_norm: float = Field(1.0, ge=0)
    """clip the combined direction's norm to this value; 0 turns clipping off (reference default 1.0)"""


def nash_weights(K: Tensor) -> Tensor:
    """(T, T) Gram → (T,) float64 α > 0 with ``K̂ α = 1/α``, K̂ = K/‖K‖_F (the reference's normalisation)."""
    K = K.double().cpu()
    norm = torch.linalg.matrix_norm(K)
    if float(norm) <= 0:
        return torch.zeros(K.shape[0], dtype=torch.float64)
    return alpha_fair_weights(K / norm, alpha=1.0)


@BALANCERS.register("nash_mtl")
class NashMTL(GradientBalancer):
    """Shared-part gradient = the Nash bargaining combination Σ α_t g_t (task t's improvement
    g_tᵀd = 1/α_t on the normalised scale), clipped to ``max_norm``. Logs α after clipping."""

    Config = NashMTLConfig

    def __init__(self, task_names: list[str], config: NashMTLConfig):
        super().__init__(task_names, config)
        self.register_buffer("_alpha", torch.ones(len(task_names), dtype=torch.float64))
        self.register_buffer("_solves", torch.zeros((), dtype=torch.long))

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: NashMTLConfig = self.config  # type: ignore[assignment]
        if int(self._solves) % cfg.update_weights_every == 0:
            self._alpha = nash_weights(K).to(self._alpha.device)
        self._solves += 1
        alpha = self._alpha.cpu()
        if cfg.max_norm > 0:
            norm = float((alpha @ K.double().cpu() @ alpha).clamp_min(0).sqrt())
            if norm > cfg.max_norm:
                alpha = alpha * (cfg.max_norm / norm)
        return alpha
