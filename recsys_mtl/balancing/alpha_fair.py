"""The α-fair weight equation shared by Nash-MTL (α = 1) and FairGrad: ``K w = w^(−1/α)``, w > 0.

Both papers pick task weights w so that the combined direction d = Σ_t w_t g_t gives task t the
improvement ``g_tᵀd = (Kw)_t = w_t^(−1/α)`` (K = G Gᵀ, the (T, T) Gram matrix). The equation is the
stationarity condition of the strictly convex function (on w > 0)

    f(w) = ½ wᵀKw − Σ_t h(w_t),   h'(w) = w^(−1/α)   (h = log for α = 1, else w^(1−1/α)/(1−1/α)),

whose Hessian ``K + diag(w^(−1/α−1)/α)`` is positive definite, so the solution is unique and
damped Newton steps on f (kept inside w > 0, Armijo backtracking) reach it to machine precision in
a handful of iterations. Nash-MTL's reference approximates the same point with a sequence of
convex programs (cvxpy/ECOS); FairGrad's reference calls ``scipy.optimize.least_squares`` on the
residual ``Kw − w^(−1/α)``. This module needs neither.

A task whose gradient is zero (e.g. no labelled row in the batch) has no finite solution
(``w_t → ∞`` while contributing nothing to d); such tasks are solved out and get weight 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _h(w: Tensor, alpha: float) -> Tensor:
    if alpha == 1.0:
        return torch.log(w)
    p = 1.0 - 1.0 / alpha
    return w.pow(p) / p


def alpha_fair_weights(K: Tensor, alpha: float = 1.0, iters: int = 100, tol: float = 1e-10) -> Tensor:
    """(T, T) Gram matrix → (T,) float64 weights w > 0 with ``K w = w^(−1/α)`` (0 for zero-gradient tasks).

    ``K`` is regularised by ``1e-10·mean(diag K)·I`` so linearly dependent gradients (where the
    exact equation has no solution) still give a finite, nearly exact answer.
    """
    K = K.double().cpu()
    T = K.shape[0]
    w_full = torch.zeros(T, dtype=torch.float64)
    diag = K.diagonal()
    live = diag > diag.max().clamp_min(0) * 1e-16
    if not bool(live.any()):
        return w_full
    K = K[live][:, live]
    K = K + 1e-10 * K.diagonal().mean() * torch.eye(K.shape[0], dtype=torch.float64)
    # start from the solution for orthogonal gradients: K_tt w = w^(−1/α) ⇒ w = K_tt^(−α/(α+1))
    w = K.diagonal().pow(-alpha / (alpha + 1.0))

    def f(v: Tensor) -> Tensor:
        return 0.5 * v @ K @ v - _h(v, alpha).sum()

    for _ in range(iters):
        grad = K @ w - w.pow(-1.0 / alpha)
        if float(grad.norm()) <= tol * (1.0 + float(w.pow(-1.0 / alpha).norm())):
            break
        hess = K + torch.diag(w.pow(-1.0 / alpha - 1.0) / alpha)
        step = -torch.linalg.solve(hess, grad)
        t, f0, slope = 1.0, f(w), float(grad @ step)
        while t > 1e-12:
            cand = w + t * step
            if bool((cand > 0).all()) and float(f(cand)) <= float(f0) + 1e-4 * t * slope:
                break
            t *= 0.5
        w = w + t * step
    w_full[live] = w
    return w_full
