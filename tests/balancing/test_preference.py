"""The preference balancer: Σ p_t L_t, and COSMOS's cosine term by hand."""

from __future__ import annotations

import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def _ctx(pref: list[float]) -> StepContext:
    model = nn.Module()
    model.last_preference = torch.tensor(pref)  # type: ignore[assignment]
    return StepContext(step=0, epoch=0, model=model)


def test_cosmos_cosine_term_by_hand() -> None:
    losses = torch.tensor([2.0, 1.0], requires_grad=True)
    ctx = _ctx([0.25, 0.75])
    # Σ p L = 1.25; cos(p, L) = 1.25 / (√0.625·√5) = 1/√2
    plain = build_balancer("preference", {}, ["a", "b"])(losses, ctx)
    torch.testing.assert_close(plain, torch.tensor(1.25))
    cosmos = build_balancer("preference", {"cosine_weight": 2.0}, ["a", "b"])(losses, ctx)
    torch.testing.assert_close(cosmos, torch.tensor(1.25 - 2 * 2**-0.5))
    cosmos.backward()
    # ∂cos/∂L = p/(‖p‖‖L‖) − cos·L/‖L‖² = (−√2/10, √2/5); gradient p − 2·∂cos/∂L
    r = 2**0.5
    torch.testing.assert_close(losses.grad, torch.tensor([0.25 + r / 5, 0.75 - 2 * r / 5]))
