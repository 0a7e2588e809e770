"""IMTL: impartial multi-task learning (Liu et al., ICLR 2021), the hybrid IMTL = IMTL-L + IMTL-G.

Reference: the paper's Algorithm 1 (no official code was released) and LibMTL's ``IMTL``.

- IMTL-L: each loss is scaled by a learnable ``e^(s_t)`` and regularised, ``e^(s_t)·L_t − s_t``
  (s_t = 0 at the start), which drives every scaled loss towards 1;
- IMTL-G: on the gradients g_t of the scaled losses with respect to the shared part, the
  combination d = Σ_t α_t g_t (Σ α_t = 1) whose projections onto every unit gradient u_t = g_t/‖g_t‖
  are equal: with D = [g_1 − g_t]ᵀ and U = [u_1 − u_t]ᵀ (t = 2..T),
  ``α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`` and ``α_1 = 1 − Σ_{t≥2} α_t`` (paper Eq. 5).

The towers receive the gradient of their own scaled loss, as in the paper.

Deviations:

- ``rescale`` (default on) multiplies α by T so the step size matches equal weighting's sum of
  losses, as MGDA and CAGrad do here (the paper's α sums to 1);
- (D Uᵀ) is inverted by least squares, so identical or collinear gradients (singular in the
  paper's formula) still give an answer; a task with a zero gradient (no labelled row) is left
  out of the system and gets α = 0;
- computed from the Gram matrix K = G Gᵀ (every term of Eq. 5 is an inner product), which lets
  DDP all-reduce K instead of the gradients;
- ``on: representation`` (the default) takes gradients of the shared representation, the
  paper's cheaper variant (like MGDA-UB); ``on: shared_parameters`` uses the shared parameters.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from recsys_mtl.balancing.base import BALANCERS, StepContext
from recsys_mtl.balancing.gradients import GradientBalancer, GradientConfig, global_gram, redirect, task_gradients


class IMTLConfig(GradientConfig):
    loss_scale: bool = True
    """learn the IMTL-L loss scales (the hybrid IMTL of the paper); off = IMTL-G alone"""
    rescale: bool = True
    """multiply α (which sums to 1) by T to match the step size of equal weighting"""


def imtl_g_weights(K: Tensor) -> Tensor:
    """(T, T) Gram → (T,) float64 α with Σ α = 1 and equal ⟨Σ α_t g_t, u_s⟩ for every task s."""
    K = K.double().cpu()
    T = K.shape[0]
    out = torch.zeros(T, dtype=torch.float64)
    norms = K.diagonal().clamp_min(0).sqrt()
    live = torch.nonzero(norms > norms.max() * 1e-8).flatten() if float(norms.max()) > 0 else torch.arange(0)
    if len(live) == 0:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    if len(live) == 1:
        out[live] = 1.0
        return out
    Kl, n = K[live][:, live], norms[live]
    # ⟨g_i, u_j⟩ = K_ij / n_j
    P = Kl / n[None, :]
    a = P[0, 0] - P[0, 1:]  # g_1 (u_1 − u_j)ᵀ, j = 2..T
    M = (P[0, 0] - P[1:, 0])[:, None] - (P[0, 1:][None, :] - P[1:, 1:])  # (g_1 − g_i)(u_1 − u_j)ᵀ
    rest = torch.linalg.lstsq(M.T, a[:, None]).solution.flatten()  # row vector a M⁻¹
    out[live] = torch.cat([(1 - rest.sum()).reshape(1), rest])
    return out


@BALANCERS.register("imtl")
class IMTL(GradientBalancer):
    """Learnable loss scales (IMTL-L) and the equal-projection gradient combination (IMTL-G).
    Logs the effective weight on each raw loss's shared gradient, ``α_t·e^(s_t)``."""

    Config = IMTLConfig

    def __init__(self, task_names: Sequence[str], config: IMTLConfig):
        super().__init__(task_names, config)
        self.log_scales = nn.Parameter(torch.zeros(len(task_names)), requires_grad=config.loss_scale)

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: IMTLConfig = self.config  # type: ignore[assignment]
        s = self.log_scales.float()
        scaled = torch.exp(s) * losses - s if cfg.loss_scale else losses
        targets, per_sample = ctx.gradient_targets(cfg.on)
        G = task_gradients(scaled, targets)
        alpha = self.coefficients(global_gram(G, per_sample), scaled.detach()).to(G.device)
        self.last_weights = (alpha.float() * torch.exp(s.detach())) if cfg.loss_scale else alpha.float()
        return redirect(scaled, targets, G, alpha.to(G.dtype) @ G)

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: IMTLConfig = self.config  # type: ignore[assignment]
        return imtl_g_weights(K) * (K.shape[0] if cfg.rescale else 1.0)
