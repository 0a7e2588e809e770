"""Aligned-MTL (Senushkin et al., CVPR 2023): independent component alignment of task gradients."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import GradientConfig, GradientBalancer


def alignment_matrix(K: Tensor, scale: str = "min") -> Tensor:
    """(T, T) Gram matrix K = G Gᵀ → B (T, T) with ``Ĝ = B·G`` perfectly conditioned.

    K = V Λ Vᵀ; B = σ·V Λ^{-1/2} Vᵀ over the non-null eigen-directions, so Ĝ Ĝᵀ = σ²·(projector):
    every non-zero singular value of Ĝ equals σ (condition number 1). σ is the smallest
    singular value of G (``min``, the paper's choice), their median, or their RMS.
    """
    K = K.double().cpu()
    lam, V = torch.linalg.eigh(K)
    keep = lam > lam.max().clamp_min(0) * K.shape[0] * 1e-10
    lam, V = lam[keep], V[:, keep]
    sigma = lam.sqrt()
    target = {"min": sigma.min(), "median": sigma.median(), "rmse": sigma.pow(2).mean().sqrt()}[scale]
    return target * (V / sigma) @ V.T


class AlignedMTLConfig(GradientConfig):
    scale: Literal["min", "median", "rmse"] = "min"
    """singular value the aligned system is scaled to: the smallest ("-UB", the paper's choice), median or RMS"""


@BALANCERS.register("aligned_mtl")
class AlignedMTL(GradientBalancer):
    """Aligns the task gradients on the shared representation into an orthogonal,
    equal-magnitude system (condition number 1) and sums it: ``d = 1ᵀ·B·G`` (the "-UB" variant).
    Logs the resulting coefficients ``B·1``."""

    Config = AlignedMTLConfig

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        cfg: AlignedMTLConfig = self.config  # type: ignore[assignment]
        if float(K.diagonal().max()) <= 0:
            return torch.ones(K.shape[0], dtype=torch.float64)
        B = alignment_matrix(K, cfg.scale)
        return B @ torch.ones(K.shape[0], dtype=torch.float64)
