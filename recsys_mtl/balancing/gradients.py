"""Shared machinery of the gradient strategies (PCGrad, CAGrad, MGDA-UB, Aligned-MTL, GradNorm).

Per-task gradients are taken only against the *shared* part of the model, chosen per strategy
with ``on``: the shared representation(s) z of the current forward (``representation``, MGDA's
"-UB" trick: a backward through the task-specific part only), or the shared parameters
(``shared_parameters``: the setting of the PCGrad and CAGrad papers, where the combined update is
conflict-averse in parameter space; costlier, T × the number of shared weights). A strategy turns the
(T, N) gradient matrix G into one direction ``d = αᵀG`` — every strategy here is a linear
combination of the task gradients, so it only needs the T×T Gram matrix ``K = G Gᵀ`` — and the
training step back-propagates the surrogate

    Σ_t L_t  +  ⟨target, d − Σ_t g_t⟩  −  ⟨target.detach(), d − Σ_t g_t⟩

whose value is Σ_t L_t and whose gradient is ``d`` on the shared target (so on everything below
it) and the usual per-task gradient on the towers. The T ``autograd.grad`` calls retain the graph
only until that one ``backward()``; nothing graph-attached outlives the step.

DDP: with a per-sample target (z) each rank holds different rows of one global gradient, so the
Gram matrices add up exactly (all-reduced); with parameter targets G itself is averaged. Every
rank then computes the same α, and DDP's usual gradient averaging yields the global direction.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from pydantic import Field

from recsys_mtl.balancing.base import Balancer, BalancerConfig, GradientSpace, StepContext


class GradientConfig(BalancerConfig):
    on: GradientSpace = "representation"
    """where per-task gradients are taken: the shared representation(s) or the shared parameters"""


class ParameterGradientConfig(GradientConfig):
    """Methods whose papers (and LibMTL) combine gradients of the shared parameters."""

    on: GradientSpace = Field("shared_parameters")
    """where per-task gradients are taken: the shared parameters (the paper's setting) or the representation(s)"""


def task_gradients(losses: Tensor, targets: Sequence[Tensor]) -> Tensor:
    """(T,) losses, shared tensors → (T, N) float32 gradients, N = total numel of ``targets``.

    fp16 activations can underflow on small gradients, so losses are scaled up before
    differentiation when a target is half precision (and the result scaled back).
    """
    scale = 1024.0 if any(t.dtype == torch.float16 for t in targets) else 1.0
    rows = []
    for i in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[i] * scale, list(targets), retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([_flat(g, t) for g, t in zip(grads, targets)])
        )
    return torch.stack(rows) / scale


def _flat(grad: Tensor | None, target: Tensor) -> Tensor:
    if grad is None:
        return torch.zeros(target.numel(), device=target.device)
    return (grad.to_dense() if grad.is_sparse else grad).reshape(-1).float()


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_gram(G: Tensor, per_sample: bool) -> Tensor:
    """(T, N) → (T, T) Gram matrix of the global-batch gradients (float64). May average G in place."""
    if distributed():
        if per_sample:
            K = G @ G.T
            dist.all_reduce(K)
            return K.double()
        dist.all_reduce(G)
        G /= dist.get_world_size()
    return (G @ G.T).double()


def redirect(losses: Tensor, targets: Sequence[Tensor], G: Tensor, direction: Tensor) -> Tensor:
    """Surrogate loss: value Σ L_t, gradient ``direction`` (N,) on ``targets``, usual elsewhere."""
    correction = (direction - G.sum(0)).detach()
    total = losses.sum()
    offset = 0
    for t in targets:
        d = correction[offset : offset + t.numel()].view_as(t).to(t.dtype)
        offset += t.numel()
        total = total + (t * d).sum() - (t.detach() * d).sum()
    return total


class GradientBalancer(Balancer):
    """Base of strategies defined by task coefficients α computed from the Gram matrix.

    Subclasses implement :meth:`coefficients`; ``last_weights`` logs α (sum scale: α = 1 for
    every task is equal weighting on the shared part).
    """

    Config = GradientConfig

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        targets, per_sample = ctx.gradient_targets(self.config.on)  # type: ignore[attr-defined]
        G = task_gradients(losses, targets)
        K = global_gram(G, per_sample)
        alpha = self.coefficients(K, losses.detach()).to(G.device)
        self.last_weights = alpha.float()
        return redirect(losses, targets, G, alpha.to(G.dtype) @ G)

    @abstractmethod
    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        """(T, T) float64 Gram matrix, (T,) detached losses → (T,) float64 coefficients."""
