"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021).

Default ``on: shared_parameters`` as in the paper's code (LibMTL refuses representation gradients
for CAGrad: the ball constraint around the mean gradient only holds in the space it is solved in);
``on: representation`` is offered as the cheaper option.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import ParameterGradientConfig, GradientBalancer


def cagrad_coefficients(K: Tensor, c: float, iters: int = 50) -> Tensor:
    """(T, T) Gram → (T,) coefficients of ``d = (g0 + √φ/‖g_w‖·g_w) / (1 + c²)`` on the mean scale.

    g0 is the mean gradient, φ = c²‖g0‖², and w on the simplex minimises
    ``g_wᵀg0 + √φ·‖g_w‖`` (softmax-parametrised, solved with L-BFGS).
    """
    K = K.double().cpu()
    T = K.shape[0]
    mean = torch.full((T,), 1.0 / T, dtype=torch.float64)
    b = K @ mean
    sqrt_phi = c * abs(float(mean @ b)) ** 0.5  # c·‖g0‖
    logits = torch.zeros(T, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        opt.zero_grad()
        w = torch.softmax(logits, 0)
        loss = w @ b + sqrt_phi * torch.sqrt(w @ K @ w + 1e-12)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(objective)
    w = torch.softmax(logits.detach(), 0)
    gw_norm = float(torch.sqrt(w @ K @ w + 1e-12))
    lam = sqrt_phi / (gw_norm + 1e-12)
    return (mean + lam * w) / (1 + c**2)


class CAGradConfig(ParameterGradientConfig):
    c: float = Field(0.4, ge=0)
    """radius of the ball around the mean gradient (paper's c; 0 = mean gradient)"""
    iters: int = Field(50, ge=1)
    """L-BFGS iterations of the inner problem over the task weights"""


@BALANCERS.register("cagrad")
class CAGrad(GradientBalancer):
    """Maximises the worst task's improvement within a ball around the average gradient.
    Coefficients are on the sum scale (× T). Logs them."""

    Config = CAGradConfig

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: CAGradConfig = self.config  # type: ignore[assignment]
        return cagrad_coefficients(K, cfg.c, cfg.iters) * K.shape[0]
