"""GCond, "Gradient Conductor" (Limarenko & Studenikina, 2025; AlevLab-dev/GCond).

``accum_steps`` batches make one optimizer update. Per-task gradients of the shared parameters
are accumulated over the window (each batch's loss divided by ``accum_steps``, as the reference
normalises); the other parameters accumulate their plain gradient in ``.grad`` (the training
module skips ``zero_grad`` and ``optimizer.step`` inside the window). On the window's last batch
the accumulated task gradients are made consistent, smooth logic of the reference:

- repeatedly (at most ``2T`` times) take the most conflicting pair (lowest cosine, below
  ``thresholds.weak``); an *arbitrator* names the winner: a task that won the last
  ``dominance_window`` conflicts loses this one, otherwise the higher score
  ``w_stab·max(cos(g, g_prev), 0) + w_str·strength`` wins, stability being the cosine with the
  task's own *resolved* gradient of the previous window (as the reference keeps it) and strength ``(‖g‖/EMA‖g‖)`` relative
  to the other's;
- the cosine c is remapped to a conflict angle α (π/2·(1 − t) above ``main``, π/2·(1 + t^p)
  down to ``critical``, π below) and both gradients are projected simultaneously:
  ``g_w −= sin α·⟨g_w,g_l⟩/‖g_l‖²·g_l``, ``g_l −= sin(min(α, π/2))·⟨g_w,g_l⟩/‖g_w‖²·g_w``;
- the resolved gradients are summed and written as the shared parameters' gradient.

Deviations from the reference: its own momentum (which replaces the optimizer's β1), the Lion /
trust-ratio options, the stochastic per-loss accumulation and the BatchNorm/dropout freezing during
accumulation are not implemented — the model's optimizer supplies momentum, and every batch
yields every task's gradient. Works on the shared parameters only: a representation changes
from batch to batch, so its gradients cannot be accumulated.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.gradients import global_gram, redirect, task_gradients


def conflict_angle(c: float, critical: float, main: float, weak: float, power: float, eps: float = 1e-8) -> float:
    """Cosine → effective conflict angle in [0, π] (the reference's non-linear remapping)."""
    c = min(max(c, -1.0), 1.0)
    if c >= main:
        t = min(max((c - main) / (weak - main + eps), 0.0), 1.0)
        return math.pi / 2 * (1.0 - t)
    if c > critical:
        t = (c - main) / (critical - main + eps)
        return math.pi / 2 * (1.0 + t**power)
    return math.pi


class GCondConfig(BalancerConfig):
    accum_steps: int = Field(8, ge=1)
    """batches accumulated into one optimizer update (the reference's accumulation_steps)"""
    thresholds: tuple[float, float, float] = (-0.8, -0.5, 0.0)
    """cosine thresholds (critical, main, weak): resolution starts below ``weak``, saturates at ``critical``"""
    remap_power: float = Field(2.0, gt=0)
    """power of the angle remapping between ``main`` and ``critical``"""
    dominance_window: int = Field(3, ge=0)
    """a task that won this many conflicts in a row loses the next one (0: off)"""
    tie_breaking: tuple[float, float] = (0.8, 0.2)
    """arbitrator weights (stability, strength)"""
    norm_ema: float = Field(0.95, ge=0, lt=1)
    """β of each task's gradient-norm moving average (strength score)"""
    on: Literal["shared_parameters"] = "shared_parameters"
    """gradients are accumulated on the shared parameters only (a representation changes every batch)"""

    @model_validator(mode="after")
    def _ordered(self) -> "GCondConfig":
        c, m, w = self.thresholds
        if not (-1 <= c <= m <= w <= 1):
            raise ValueError("thresholds must satisfy -1 <= critical <= main <= weak <= 1")
        return self


@BALANCERS.register("gcond")
class GCond(Balancer):
    """See the module docstring. Logs the resolved coefficients of the last window (sum scale)
    and ``conflict_rate`` (share of task pairs in conflict before the last resolution)."""

    Config = GCondConfig

    def __init__(self, task_names: Sequence[str], config: GCondConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        # (T, P) gradients of this window and resolved ones of the last window; (0,) before there are any
        self.register_history("accumulated", torch.zeros(0))
        self.register_history("previous", torch.zeros(0))
        self.register_history("winners", torch.zeros(0, dtype=torch.long))  # last conflicts' winners
        self.register_buffer("norm_avg", torch.ones(T, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # batches accumulated in this window
        self.register_buffer("last_weights", torch.ones(T))  # persistent: a resumed run keeps its weights
        self.first_in_window = True
        self.conflict_rate = 0.0

    def steps_optimizer(self) -> bool:
        return int(self.count) + 1 >= self.config.accum_steps  # type: ignore[attr-defined]

    def zeroes_gradients(self) -> bool:
        return self.first_in_window

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: GCondConfig = self.config  # type: ignore[assignment]
        targets, _ = ctx.gradient_targets("shared_parameters")
        scaled = losses / cfg.accum_steps
        G = task_gradients(scaled, targets)
        global_gram(G, per_sample=False)  # averages G over DDP ranks in place
        self.first_in_window = int(self.count) == 0
        self.accumulated = G.detach().clone() if self.first_in_window else self.accumulated.to(G) + G
        self.count += 1
        if int(self.count) < cfg.accum_steps:
            direction = torch.zeros_like(G[0])  # the shared part waits for the window's decision
        else:
            direction = self.resolve(self.accumulated).to(G)
            self.accumulated = torch.zeros(0, device=G.device)
            self.count.zero_()
        surrogate = redirect(scaled, targets, G, direction)
        return losses.detach().sum() + (surrogate - surrogate.detach())  # logged value Σ L_t, gradient of the window share

    @torch.no_grad()
    def resolve(self, G: Tensor) -> Tensor:
        """(T, P) accumulated task gradients → (P,) conflict-resolved sum; updates the arbitration state."""
        cfg: GCondConfig = self.config  # type: ignore[assignment]
        T = G.shape[0]
        K = (G @ G.T).double().cpu()
        norms = K.diagonal().clamp_min(0).sqrt()
        avg = (cfg.norm_ema * self.norm_avg.cpu() + (1 - cfg.norm_ema) * norms).clamp_min(1e-8)
        self.norm_avg.copy_(avg)
        if self.previous.numel():
            prev = self.previous.to(G)
            M = (G @ prev.T).double().cpu()  # M[s, i] = ⟨g_s, g_i^prev⟩
            prev_norm = (prev * prev).sum(1).double().cpu().sqrt()
        else:
            M, prev_norm = torch.zeros(T, T, dtype=torch.float64), torch.zeros(T, dtype=torch.float64)
        C = torch.eye(T, dtype=torch.float64)  # resolved ĝ_i = Σ_s C[i, s]·g_s
        critical, main, weak = cfg.thresholds
        cos0 = K / (torch.outer(norms, norms) + 1e-8)
        conflicts = int((cos0[torch.ones(T, T, dtype=torch.bool).triu(1)] < weak).sum())
        for _ in range(2 * T):
            gram = C @ K @ C.T
            n = gram.diagonal().clamp_min(0).sqrt()
            cos = gram / (torch.outer(n, n) + 1e-8)
            cos.fill_diagonal_(float("inf"))
            cos[(n < 1e-12)] = float("inf")
            cos[:, (n < 1e-12)] = float("inf")
            c = float(cos.min())
            if c >= weak:
                break
            i, j = divmod(int(cos.argmin()), T)
            w, lo = self._arbitrate(i, j, C, n, M, prev_norm)  # winner, loser
            alpha = conflict_angle(c, critical, main, weak, cfg.remap_power)
            dot = float(gram[i, j])
            cw, cl = C[w].clone(), C[lo].clone()
            C[w] = cw - math.sin(alpha) * dot / (float(gram[lo, lo]) + 1e-8) * cl
            C[lo] = cl - math.sin(min(alpha, math.pi / 2)) * dot / (float(gram[w, w]) + 1e-8) * cw
        self.conflict_rate = conflicts / max(T * (T - 1) / 2, 1)
        # the next window's stability score compares against these resolved gradients, as the reference
        self.previous = C.to(G) @ G
        coef = C.sum(0)
        self.last_weights = coef.float().to(self.last_weights.device)
        return coef.to(G) @ G

    def _arbitrate(self, i: int, j: int, C: Tensor, n: Tensor, M: Tensor, prev_norm: Tensor) -> tuple[int, int]:
        cfg: GCondConfig = self.config  # type: ignore[assignment]
        recent = self.winners.tolist()
        full = cfg.dominance_window > 0 and len(recent) == cfg.dominance_window
        if full and all(x == i for x in recent):
            winner = j  # a dominant task yields the next conflict
        elif full and all(x == j for x in recent):
            winner = i
        else:
            stability = [float(C[k] @ M[:, k]) / (float(n[k] * prev_norm[k]) + 1e-8) for k in (i, j)]
            scaled = [float(n[k] / float(self.norm_avg[k])) for k in (i, j)]
            strength = [s / (sum(scaled) + 1e-8) for s in scaled]
            ws, wn = cfg.tie_breaking
            score = [ws * max(stability[k], 0.0) + wn * strength[k] for k in range(2)]
            winner = j if score[1] > score[0] else i
        if cfg.dominance_window > 0:
            self.winners = torch.tensor([*recent, winner], dtype=torch.long, device=self.winners.device)[-cfg.dominance_window :]
        return winner, (j if winner == i else i)

    def diagnostics(self) -> dict[str, float]:
        return {"conflict_rate": self.conflict_rate}
