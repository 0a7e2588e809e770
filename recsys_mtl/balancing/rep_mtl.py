"""Rep-MTL: representation-level task saliency (Wang, Li & Xu, ICCV 2025, arXiv 2507.21049).

Task saliency is the gradient of a task's loss with respect to the shared representation. For
one captured tensor z of shape (B, N, C) — N positions (the paper's H×W; MMoE's E experts) of C
channels; a (B, C) tensor has one position — ``S_t = ∂L_t/∂z`` (B, N, C). Two regularisers join
the equally weighted task losses, ``L = Σ_t L_t + tsr_weight·L_tsr + csa_weight·L_csa``:

- task-specific saliency regulation (TSR, paper Eqs. 4-6): the signed saliency is averaged over
  channels, keeping positions, ``ŝ_t(b, n) = (1/C) Σ_c S_t(b, n, c)``; a softmax over tasks gives
  each position's task distribution ``P_t(b, n)``, and its entropy ``−Σ_t P_t log P_t`` averaged over
  samples and positions is penalised, so every position of the representation is dominated by
  a task instead of a blur of all (against negative transfer);
- cross-task saliency alignment (CSA, paper Eqs. 7-9): per sample and task the channel-affinity
  map ``A_t(b) = S_t(b)ᵀ S_t(b)`` (C, C) (the paper's S·Sᵀ with S as C × HW), flattened and
  L2-normalised; the per-sample anchor is the normalised mean of the tasks' maps for that
  sample; an InfoNCE with temperature τ takes each task's map of the same sample as the
  positive and the maps of the other samples as negatives, averaged over samples and tasks
  (complementary sharing: tasks come to use the same channel relations on each sample).

The saliencies are differentiated (``create_graph``), so the regularisers reach the
task-specific part and, through z, the shared part. Several captured tensors each give both
terms, averaged over tensors. Cost: T backward passes with a graph, one second-order backward,
and (T·B', C²) affinity maps per tensor (B' = ``csa_rows``).

Deviations:

- no official code exists (the authors' repository holds a README only); this follows the
  paper's equations as described above; the regulariser weights and τ are our defaults, not the
  paper's per-benchmark values;
- the saliency is taken of the summed per-row loss (B × the batch mean), so a row's saliency is
  the gradient of its own loss, independent of the batch size (with the batch mean it shrinks as
  1/B and the TSR softmax flattens to uniform);
- the CSA contrasts a random subset of ``csa_rows`` rows (128) of larger batches: its cost grows
  as B²·C² (1.2 s per 1,024-row census step with all rows, 83× equal weighting); the paper's
  dense-prediction batches are small (8-32 images), so its negatives were few as well;
- tabular representations have no spatial grid: a 3-D capture's middle axis (e.g. experts) plays
  the positions, and a 2-D capture has a single position (its affinity map is ``s sᵀ``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext


def saliency_entropy(saliency: Tensor) -> Tensor:
    """TSR: (T, B, N, C) saliencies → mean over (B, N) of the entropy of softmax_t(mean_c S_t)."""
    s = saliency.mean(-1)  # (T, B, N) signed, channels averaged
    logp = torch.log_softmax(s, dim=0)
    return -(logp.exp() * logp).sum(0).mean()


def affinity_maps(saliency: Tensor) -> Tensor:
    """(T, B, N, C) → (T, B, C·C) flattened, L2-normalised channel-affinity maps SᵀS."""
    A = torch.einsum("tbnc,tbnd->tbcd", saliency, saliency)
    return F.normalize(A.flatten(2), dim=-1)


def saliency_alignment(saliency: Tensor, temperature: float) -> Tensor:
    """CSA: (T, B, N, C) saliencies → InfoNCE of each task's affinity map against the per-sample
    anchor (mean over tasks), the other samples' maps of that task being the negatives."""
    T, B = saliency.shape[:2]
    maps = affinity_maps(saliency)  # (T, B, D)
    anchor = F.normalize(maps.mean(0), dim=-1)  # (B, D)
    logits = torch.einsum("bd,tkd->tbk", anchor, maps) / temperature  # (T, B anchors, B candidates)
    target = torch.arange(B, device=saliency.device).repeat(T)
    return F.cross_entropy(logits.reshape(T * B, B), target)


class RepMTLConfig(BalancerConfig):
    tsr_weight: float = Field(0.1, ge=0)
    """weight of the task-specific saliency regulation (entropy penalty)"""
    csa_weight: float = Field(0.1, ge=0)
    """weight of the cross-task saliency alignment (InfoNCE)"""
    temperature: float = Field(0.1, gt=0)
    """InfoNCE temperature τ"""
    csa_rows: int = Field(128, ge=0)
    """rows (drawn at random each step) the CSA contrasts when the batch is larger; 0 = all rows"""


@BALANCERS.register("rep_mtl")
class RepMTL(Balancer):
    """See the module docstring. Weights stay 1 (equal weighting); logs ``tsr`` and ``csa``."""

    Config = RepMTLConfig

    def __init__(self, task_names: Sequence[str], config: RepMTLConfig):
        super().__init__(task_names, config)
        self.tsr = 0.0
        self.csa = 0.0

    @staticmethod
    def saliencies(losses: Tensor, reps: Sequence[Tensor]) -> list[Tensor]:
        """(T,) losses (batch means), shared tensors (B, C) or (B, N, C) → per tensor (T, B, N, C)
        saliencies of the rows' own losses, in the graph."""
        per_task = []
        for t in range(losses.shape[0]):
            rows = reps[0].shape[0]
            grads = torch.autograd.grad(losses[t] * rows, list(reps), create_graph=True, allow_unused=True)
            per_task.append([torch.zeros_like(z) if g is None else g for g, z in zip(grads, reps)])
        out = []
        for i, z in enumerate(reps):
            S = torch.stack([per_task[t][i] for t in range(len(per_task))]).float()
            out.append(S.reshape(S.shape[0], S.shape[1], -1, S.shape[-1]))  # (B, C) → one position
        return out

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: RepMTLConfig = self.config  # type: ignore[assignment]
        reps = ctx.representations()
        if not reps:
            raise RuntimeError("rep_mtl needs a shared representation; this model exposes none (shared_modules())")
        sal = self.saliencies(losses, reps)
        tsr = torch.stack([saliency_entropy(S) for S in sal]).mean()
        rows = sal[0].shape[1]
        if 0 < cfg.csa_rows < rows:  # the contrast costs B²·C²: a random subset of the batch's rows
            pick = torch.randperm(rows, device=sal[0].device)[: cfg.csa_rows]
            sal_csa = [S[:, pick] for S in sal]
        else:
            sal_csa = sal
        csa = torch.stack([saliency_alignment(S, cfg.temperature) for S in sal_csa]).mean()
        self.tsr, self.csa = float(tsr.detach()), float(csa.detach())
        return losses.sum() + cfg.tsr_weight * tsr.to(losses) + cfg.csa_weight * csa.to(losses)

    def diagnostics(self) -> dict[str, float]:
        return {"tsr": self.tsr, "csa": self.csa}
