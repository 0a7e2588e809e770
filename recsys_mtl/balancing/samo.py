"""SAMO: sharpness-aware multi-task optimisation with joint global-local perturbation
(Ban et al., ICCV 2025; OptMN-Lab/SAMO).

Each task's gradient is taken at its own sharpness-aware point. The perturbation of the shared
parameters mixes the *global* (joint) gradient g of the mean loss with a *local* estimate of the
task's own gradient obtained from forward passes only (a two-point zeroth-order estimate along a
random direction u: ``ĝ_t = (L_t(θ+εu) − L_t(θ−εu)) / 2ε · u``), normalised layer-wise:

    m_t[p] = (1 − β)·g[p] + β·‖g[p]‖·ĝ_t[p] / ‖ĝ_t[p]‖          (per parameter tensor p)
    δ_t = ρ·m_t / ‖m_t‖

The task's own (non-shared) parameters are perturbed by ``ρ·g / ‖g‖`` over the parameters its
loss reaches. Then, per task, the model is re-run at θ + δ_t and L_t differentiated there: the
shared parts of those T gradients are combined (summed, or by the gradient method named in
``inner``, as the reference pairs SAMO with FairGrad & co.), the non-shared parts are each task's
own. The step stays one ``backward()`` under Lightning: the returned surrogate's gradient is that
direction. Cost: one extra backward for g, 2T forward passes (eval mode, no gradients) and T
forward/backward passes per step.

Deviations from the reference: BatchNorm running statistics are frozen during the perturbed
passes by a zero momentum (the reference toggles them off); the task parameters perturbed for
task t are the non-shared parameters its loss moves on the first step (the reference's task
heads, plus, here, embeddings and task-specific experts; a parameter no task moves counts for
all); the adaptive (ASAM) variant is not implemented. The reference's equal-weighting combiner
(``LinearScalarizationWithSAMO``) multiplies the summed shared gradient by T once more ("to match
the sum loss") and clips the shared gradients' norm to ``max_norm`` = 1; here the shared gradient
is the plain sum Σ_t g_t, already on the sum-of-losses scale of every other strategy, and
clipping is left to ``trainer.gradient_clip_val`` (off by default), so with ``inner: equal`` a step
is 1/T of the reference's before its clipping.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.capture import sparse_parameter_ids
from recsys_mtl.balancing.gradients import GradientBalancer, global_gram
from recsys_mtl.errors import SpecError


class SAMOConfig(BalancerConfig):
    rho: float = Field(0.01, gt=0)
    """radius ρ of each task's perturbation"""
    beta: float = Field(0.5, ge=0, le=1)
    """β: share of the zeroth-order local gradient in the shared perturbation (the paper's 1 − α)"""
    zo_eps: float = Field(0.01, gt=0)
    """ε of the zeroth-order estimate"""
    inner: str = "equal"
    """gradient method combining the tasks' sharpness-aware shared gradients ("equal": their sum)"""


@contextmanager
def frozen_batch_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics left unchanged by the forwards inside (momentum 0)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(norms, saved):
            m.momentum = mom


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@BALANCERS.register("samo")
class SAMO(Balancer):
    """See the module docstring. Logs the combination coefficients of the tasks' shared gradients."""

    Config = SAMOConfig

    def __init__(self, task_names: Sequence[str], config: SAMOConfig):
        super().__init__(task_names, config)
        self.inner: GradientBalancer | None = None
        if config.inner != "equal":
            inner = BALANCERS.get(config.inner)
            if not issubclass(inner, GradientBalancer):
                raise SpecError(f"balancing.params.inner: {config.inner!r} is not a gradient method (pcgrad, mgda, cagrad, aligned_mtl, nash_mtl, fairgrad, imtl)")
            self.inner = inner(task_names, BALANCERS.config(config.inner, {}))  # type: ignore[call-arg]
        self._owned: list[list[bool]] | None = None

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: SAMOConfig = self.config  # type: ignore[assignment]
        if ctx.model is None or ctx.evaluate is None:
            raise RuntimeError("samo needs the model and a re-evaluation of the batch (StepContext.model, .evaluate)")
        shared = ctx.parameters()
        if sparse_parameter_ids(ctx.model):
            raise RuntimeError("samo: sparse-gradient embedding tables are not supported; set trainer.embedding_optimizer: dense")
        ids = {id(p) for p in shared}
        others = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in ids]
        T = losses.shape[0]
        if self._owned is None:  # which non-shared parameters each task's loss moves (fixed by the architecture)
            reach = [torch.autograd.grad(losses[t], others, retain_graph=True, allow_unused=True) for t in range(T)]
            moved = [[g is not None and bool(g.abs().sum() > 0) for g in r] for r in reach]
            # a parameter no task moved on the first step (a dead unit) is treated as every task's
            unclaimed = [not any(m[i] for m in moved) for i in range(len(others))]
            self._owned = [[m[i] or unclaimed[i] for i in range(len(others))] for m in moved]
        joint = _grads(losses.mean(), shared + others, retain_graph=True)
        g_shared, g_other = joint[: len(shared)], joint[len(shared) :]
        saved = [p.detach().clone() for p in shared + others]
        try:
            local = [self._zeroth_order(shared, ctx, t) for t in range(T)]
            rows, other_grads = [], [torch.zeros_like(p) for p in others]
            for t in range(T):
                own = [i for i, o in enumerate(self._owned[t]) if o]
                self._perturb(shared, self._shared_delta(g_shared, local[t]))
                self._perturb([others[i] for i in own], _scaled([g_other[i] for i in own], cfg.rho))
                with frozen_batch_stats(ctx.model):
                    loss_t = ctx.evaluate()[t]
                grads = _grads(loss_t, shared + [others[i] for i in own])
                rows.append(torch.cat([g.reshape(-1).float() for g in grads[: len(shared)]]))
                for i, g in zip(own, grads[len(shared) :]):
                    other_grads[i] += g
                _restore(shared + others, saved)
        finally:
            _restore(shared + others, saved)
        G = torch.stack(rows)
        K = global_gram(G, per_sample=False)
        alpha = self.inner.coefficients(K, losses.detach()).to(G) if self.inner is not None else torch.ones(T).to(G)
        self.last_weights = alpha.float().detach()
        direction = alpha @ G
        total = losses.detach().sum()
        offset = 0
        for p in shared:
            d = direction[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            total = total + (p * d).sum() - (p.detach() * d).sum()
        for p, g in zip(others, other_grads):
            total = total + (p * g).sum() - (p.detach() * g).sum()
        return total

    @torch.no_grad()
    def _zeroth_order(self, shared: list[Tensor], ctx: StepContext, t: int) -> list[Tensor]:
        """Two-point estimate of ∇L_t on the shared parameters, from forward passes only."""
        eps = self.config.zo_eps  # type: ignore[attr-defined]
        u = [torch.randn_like(p) for p in shared]
        assert ctx.model is not None and ctx.evaluate is not None
        with evaluation_mode(ctx.model):
            self._perturb(shared, [eps * x for x in u])
            plus = float(ctx.evaluate()[t])
            self._perturb(shared, [-2 * eps * x for x in u])
            minus = float(ctx.evaluate()[t])
            self._perturb(shared, [eps * x for x in u])
        return [(plus - minus) / (2 * eps) * x for x in u]

    def _shared_delta(self, g: list[Tensor], local: list[Tensor]) -> list[Tensor]:
        beta = self.config.beta  # type: ignore[attr-defined]
        mixed = [
            (1 - beta) * gp + beta * gp.norm() * lp / lp.norm().clamp_min(1e-12) for gp, lp in zip(g, local)
        ]
        return _scaled(mixed, self.config.rho)  # type: ignore[attr-defined]

    @staticmethod
    @torch.no_grad()
    def _perturb(params: Sequence[Tensor], deltas: Sequence[Tensor]) -> None:
        for p, d in zip(params, deltas):
            p.data.add_(d.to(p.dtype))  # .data: the step's graph (values restored after) stays valid


def _grads(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = False) -> list[Tensor]:
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else (g.to_dense() if g.is_sparse else g) for g, p in zip(grads, params)]


def _scaled(vectors: Sequence[Tensor], radius: float) -> list[Tensor]:
    """``radius · v / ‖v‖`` with the norm over all tensors together."""
    if not vectors:
        return []
    norm = torch.sqrt(sum((v.float() ** 2).sum() for v in vectors)).clamp_min(1e-12)  # type: ignore[arg-type]
    return [radius * v / norm for v in vectors]


@torch.no_grad()
def _restore(params: Sequence[Tensor], saved: Sequence[Tensor]) -> None:
    for p, s in zip(params, saved):
        p.data.copy_(s)
