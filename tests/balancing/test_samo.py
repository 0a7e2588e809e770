"""SAMO on a toy: forward-only local estimates, the sharpness-aware gradient it applies, and the
reduction to plain gradients as the radius shrinks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


class Toy(nn.Module):
    """Shared linear layer, one linear head per task, squared error on fixed data."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(3, 4)
        self.heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
        self.x = torch.randn(16, 3)
        self.y = torch.randn(16, 2)
        self.y[:, 1] = -self.y[:, 0]  # conflicting targets

    def losses(self) -> torch.Tensor:
        z = torch.tanh(self.shared(self.x))
        return torch.stack([(h(z).squeeze(-1) - self.y[:, t]).pow(2).mean() for t, h in enumerate(self.heads)])


def step(toy: Toy, params: dict, calls: list | None = None) -> dict[str, torch.Tensor]:  # type: ignore[type-arg]
    def evaluate() -> torch.Tensor:
        if calls is not None:
            calls.append(torch.is_grad_enabled())
        return toy.losses()

    balancer = build_balancer("samo", params, ["a", "b"])
    toy.zero_grad()
    ctx = StepContext(step=0, epoch=0, model=toy, shared_params=list(toy.shared.parameters()), evaluate=evaluate)
    balancer(toy.losses(), ctx).backward()
    return {n: p.grad.clone() for n, p in toy.named_parameters()}


def test_local_estimates_use_forward_passes_only() -> None:
    calls: list[bool] = []
    step(Toy(), {}, calls)
    assert calls[:4] == [False] * 4  # 2 tasks × 2 zeroth-order evaluations, no autograd graph
    assert calls[4:] == [True, True]  # one sharpness-aware forward/backward per task


def test_tiny_radius_gives_the_plain_gradient() -> None:
    toy = Toy()
    samo = step(toy, {"rho": 1e-7})
    toy.zero_grad()
    toy.losses().sum().backward()
    for n, p in toy.named_parameters():
        torch.testing.assert_close(samo[n], p.grad, rtol=1e-3, atol=1e-6)


def test_global_perturbation_gives_the_sam_gradient() -> None:
    """β = 0: every task is evaluated at θ + ρ·g/‖g‖ (shared) and its head at its own SAM point."""
    rho = 0.05
    toy = Toy()
    samo = step(toy, {"rho": rho, "beta": 0.0})
    shared = list(toy.shared.parameters())
    g = torch.autograd.grad(toy.losses().mean(), list(toy.parameters()))
    gs = dict(zip([n for n, _ in toy.named_parameters()], g))
    norm_s = torch.sqrt(sum((gs[n] ** 2).sum() for n in ("shared.weight", "shared.bias")))
    expected = {n: torch.zeros_like(p) for n, p in toy.named_parameters()}
    for t in range(2):
        head = [f"heads.{t}.weight", f"heads.{t}.bias"]
        norm_h = torch.sqrt(sum((gs[n] ** 2).sum() for n in head))
        perturbed = Toy()
        perturbed.load_state_dict(toy.state_dict())
        with torch.no_grad():
            for n, p in perturbed.named_parameters():
                if n.startswith("shared"):
                    p += rho * gs[n] / norm_s
                elif n in head:
                    p += rho * gs[n] / norm_h
        loss_t = perturbed.losses()[t]
        names = ["shared.weight", "shared.bias", *head]
        params = dict(perturbed.named_parameters())
        for n, gr in zip(names, torch.autograd.grad(loss_t, [params[n] for n in names])):
            expected[n] += gr
    for n in expected:
        torch.testing.assert_close(samo[n], expected[n], rtol=1e-4, atol=1e-6)
    assert shared[0].requires_grad  # parameters restored, still trainable


@pytest.mark.slow
def test_zeroth_order_estimate_is_unbiased() -> None:
    toy = Toy()
    balancer = build_balancer("samo", {"zo_eps": 1e-3}, ["a", "b"])
    shared = list(toy.shared.parameters())
    ctx = StepContext(step=0, epoch=0, model=toy, shared_params=shared, evaluate=toy.losses)
    torch.manual_seed(1)
    est = [torch.cat([x.reshape(-1) for x in balancer._zeroth_order(shared, ctx, 0)]) for _ in range(4000)]
    true = torch.cat([x.reshape(-1) for x in torch.autograd.grad(toy.losses()[0], shared)])
    cos = torch.nn.functional.cosine_similarity(torch.stack(est).mean(0), true, dim=0)
    assert cos > 0.9


def test_inner_method_combines_the_shared_gradients() -> None:
    equal = step(Toy(), {"rho": 0.05})
    mgda = step(Toy(), {"rho": 0.05, "inner": "mgda"})
    assert not torch.allclose(equal["shared.weight"], mgda["shared.weight"])
    torch.testing.assert_close(equal["heads.0.weight"], mgda["heads.0.weight"])  # heads keep their own
