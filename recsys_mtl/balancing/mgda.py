"""MGDA-UB (Sener & Koltun, NeurIPS 2018): the min-norm point of the task gradients' convex hull,
computed on the shared representation (the upper-bound trick)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import GradientConfig, GradientBalancer


def _segment_min(vv: float, vg: float, gg: float) -> float:
    """argmin over γ ∈ [0, 1] of ‖(1−γ)v + γg‖², from ⟨v,v⟩, ⟨v,g⟩, ⟨g,g⟩."""
    denom = vv + gg - 2 * vg
    if denom <= 1e-20:
        return 0.0
    return min(max((vv - vg) / denom, 0.0), 1.0)


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of (T,) onto the probability simplex (sort-based)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    k = torch.arange(1, len(v) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / k > 0).max())
    return torch.clamp(v - css[rho] / (rho + 1), min=0)


def min_norm_weights(K: Tensor, iters: int = 250, tol: float = 1e-12) -> Tensor:
    """(T, T) Gram matrix → (T,) convex weights α minimising ‖Σ α_t g_t‖² = αᵀKα.

    Two tasks: the exact segment solution. More: accelerated projected gradient on the simplex
    (the MGDA paper's solver also projects gradient steps; FISTA converges faster).
    """
    K = K.double().cpu()
    T = K.shape[0]
    if T == 1:
        return torch.ones(1, dtype=torch.float64)
    if T == 2:
        g = _segment_min(float(K[0, 0]), float(K[0, 1]), float(K[1, 1]))  # γ: share of g2
        return torch.tensor([1 - g, g], dtype=torch.float64)
    step = 1.0 / (2 * float(torch.linalg.eigvalsh(K).max()) + 1e-20)
    alpha = torch.full((T,), 1.0 / T, dtype=torch.float64)
    y, t = alpha.clone(), 1.0
    for _ in range(iters):
        new = project_simplex(y - step * 2 * (K @ y))
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = new + (t - 1) / t_next * (new - alpha)
        done = float((new - alpha).abs().sum()) < tol
        alpha, t = new, t_next
        if done:
            break
    return alpha


class MGDAConfig(GradientConfig):
    normalize: Literal["none", "l2", "loss", "loss+"] = "none"
    """gradient normalisation before the solver (MGDA paper): none, l2, loss (g/L), loss+ (g/(L·‖g‖))"""
    rescale: bool = True
    """multiply α (which sums to 1) by T so the step size matches equal weighting's sum of losses"""
    iters: int = Field(250, ge=1)
    """solver iterations (3+ tasks; two tasks are solved exactly)"""


@BALANCERS.register("mgda")
class MGDA(GradientBalancer):
    """Shared-representation gradient = the min-norm convex combination Σ α_t g_t (a common descent
    direction when one exists). Logs α (× T when ``rescale``)."""

    Config = MGDAConfig

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: MGDAConfig = self.config  # type: ignore[assignment]
        K = K.cpu()
        norms = K.diagonal().clamp_min(1e-20).sqrt()
        L = losses.double().cpu().clamp_min(1e-12)
        scale = {"none": torch.ones_like(norms), "l2": norms, "loss": L, "loss+": L * norms}[cfg.normalize]
        # as in the MGDA code, the weights solved on normalised gradients scale the raw losses
        alpha = min_norm_weights(K / torch.outer(scale, scale), cfg.iters)
        return alpha * (len(alpha) if cfg.rescale else 1.0)
