"""Rep-MTL: representation-level task saliency (Wang, Li & Xu, ICCV 2025).

Task saliency is the gradient of a task's loss with respect to the shared representation,
``S_t = ∂L_t/∂z`` (B, C) per sample and channel (several captured tensors are concatenated along
C). Two regularisers on the saliencies join the equally weighted task losses:

- task-specific saliency regulation (TSR): with ``p_t = |S_t| / Σ_s |S_s|`` the tasks' shares of
  each element's saliency, the mean entropy ``−Σ_t p_t log p_t`` is penalised, so each element
  of the representation serves one task clearly instead of a blur of all (against negative
  transfer);
- cross-task saliency alignment (CSA): per sample, the normalised saliency vectors of two tasks
  are a positive pair and those of other samples negatives (InfoNCE with ``temperature``, averaged
  over ordered task pairs), so tasks come to rely on the same samples' shared features
  (complementary sharing).

``L = Σ_t L_t + tsr_weight·TSR + csa_weight·CSA``; the saliencies are differentiated
(``create_graph``), so the regularisers reach the task-specific part and, through z, the
shared part. Cost: T backward passes through the task-specific part with a graph, and one
second-order backward.

Written from the paper's description: the authors have published no code (their repository
holds a README only). The regulariser weights and temperature are our defaults, not the
paper's per-benchmark values; spatial pooling of the paper's dense-prediction saliency maps has
no counterpart on tabular representations (the channels are the elements).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext


def saliency_entropy(saliency: Tensor) -> Tensor:
    """(T, B, C) saliencies → mean over (B, C) of the entropy of the tasks' shares |S_t| / Σ|S|."""
    a = saliency.abs()
    p = a / a.sum(0, keepdim=True).clamp_min(1e-12)
    return -(p * p.clamp_min(1e-12).log()).sum(0).mean()


def saliency_alignment(saliency: Tensor, temperature: float) -> Tensor:
    """(T, B, C) saliencies → InfoNCE over samples, averaged over ordered task pairs (t ≠ s)."""
    T, B = saliency.shape[:2]
    v = F.normalize(saliency.abs(), dim=-1)
    target = torch.arange(B, device=saliency.device)
    terms = [
        F.cross_entropy(v[t] @ v[s].T / temperature, target) for t in range(T) for s in range(T) if t != s
    ]
    return torch.stack(terms).mean() if terms else saliency.new_zeros(())


class RepMTLConfig(BalancerConfig):
    #: weight of the task-specific saliency regulation (entropy penalty)
    tsr_weight: float = Field(0.1, ge=0)
    #: weight of the cross-task saliency alignment (InfoNCE)
    csa_weight: float = Field(0.1, ge=0)
    #: InfoNCE temperature
    temperature: float = Field(0.1, gt=0)


@BALANCERS.register("rep_mtl")
class RepMTL(Balancer):
    """See the module docstring. Weights stay 1 (equal weighting); logs ``tsr`` and ``csa``."""

    Config = RepMTLConfig

    def __init__(self, task_names: Sequence[str], config: RepMTLConfig):
        super().__init__(task_names, config)
        self.tsr = 0.0
        self.csa = 0.0

    def saliencies(self, losses: Tensor, reps: Sequence[Tensor]) -> Tensor:
        """(T,) losses, shared representations (B, …) → (T, B, C) saliencies, in the graph."""
        rows = []
        for t in range(losses.shape[0]):
            grads = torch.autograd.grad(losses[t], list(reps), create_graph=True, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(z) if g is None else g).flatten(1) for g, z in zip(grads, reps)], 1))
        return torch.stack(rows).float()

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: RepMTLConfig = self.config  # type: ignore[assignment]
        reps = ctx.representations()
        if not reps:
            raise RuntimeError("rep_mtl needs a shared representation; this model exposes none (shared_modules())")
        S = self.saliencies(losses, reps)
        tsr = saliency_entropy(S)
        csa = saliency_alignment(S, cfg.temperature)
        self.tsr, self.csa = float(tsr.detach()), float(csa.detach())
        return losses.sum() + cfg.tsr_weight * tsr.to(losses) + cfg.csa_weight * csa.to(losses)

    def diagnostics(self) -> dict[str, float]:
        return {"tsr": self.tsr, "csa": self.csa}
