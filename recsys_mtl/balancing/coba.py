"""CoBa: convergence balancer from validation-loss slopes (Gong et al., EMNLP 2024).

Follows the authors' code (codefuse-ai/MFTCoder, ``CoBaStatus``): the weights are recomputed
after every training step from the validation losses of one sampled validation batch per step,
normalised by the full validation losses measured before training.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext


def slope(values: Tensor) -> Tensor:
    """(N, T) series → (T,) least-squares slope per column against 0..N−1.

    NaN entries (a task absent from that step's validation batch) are left out of their column's
    fit; a column with fewer than two points has slope 0.
    """
    n = values.shape[0]
    x = torch.arange(n, dtype=values.dtype, device=values.device).view(-1, *[1] * (values.ndim - 1))
    keep = ~torch.isnan(values)
    m = keep.to(values.dtype)
    count = m.sum(0)
    y = torch.where(keep, values, torch.zeros_like(values))
    x_mean = (m * x).sum(0) / count.clamp_min(1)
    y_mean = y.sum(0) / count.clamp_min(1)
    xc = (x - x_mean) * m
    den = (xc * xc).sum(0)
    out = (xc * (y - y_mean)).sum(0) / den.clamp_min(1e-30)
    return torch.where((count >= 2) & (den > 0), out, torch.zeros_like(out))


def coba_weights(task_slopes: Tensor, total_slopes: Tensor, tau: float) -> tuple[Tensor, float]:
    """Weights (T,) summing to 1 (before the floor) and the divergence factor.

    task_slopes: (K, T) slopes of each task's normalised validation loss, oldest first, the last
    row the current step's; total_slopes: (J,) slopes of the largest task loss, all steps since the
    warm-up (the reference keeps them all).
    """
    a = task_slopes[-1]
    T = a.shape[0]
    rcs = torch.softmax(T * a / a.abs().sum().clamp_min(1e-12), 0)
    # each task's slope relative to its own history (sign reversed: rising loss → low score)
    acs = torch.softmax(-task_slopes.shape[0] * a / task_slopes.abs().sum(0).clamp_min(1e-12), 0)
    k = total_slopes.shape[0]
    df = float(torch.softmax(tau * (-k * total_slopes / total_slopes.abs().sum().clamp_min(1e-12)), 0)[-1] * k)
    logits = df * rcs + (1 - df) * acs
    return torch.softmax(T * logits, 0), df


class CoBaConfig(BalancerConfig):
    warmup_steps: int = Field(100, ge=1)
    """training steps with equal weights before the first update (reference default 100)"""
    history: int = Field(200, ge=2)
    """sampled validation points the slopes are fitted on, and per-task slopes the ACS compares against (reference default 200)"""
    tau: float = Field(5.0, gt=0)
    """τ, sharpness of the divergence factor's softmax (reference default 5)"""
    sample_batches: int = Field(1, ge=1)
    """validation batches averaged per step (reference default 1)"""


@BALANCERS.register("coba")
class CoBa(Balancer):
    """After each step (``post_step = "validation_batch"``) a sampled validation batch's losses,
    divided by the full validation losses before training, join a history. From the warm-up on,
    over the last ``history`` points:

    - slopes α_t of each task's normalised loss (least squares), α_max of the largest task loss;
    - relative convergence ``RCS = softmax(T·α / Σ|α|)``: a task converging more slowly than the
      others gets more weight;
    - absolute convergence ``ACS = softmax(−K·α_t / Σ_{j≤K}|α_t(j)|)`` over the task's last K
      slopes: a task whose slope turns up against its own history gets less;
    - divergence factor ``DF = k·softmax_j(τ·(−k·α_max(j) / Σ_i|α_max(i)|))[k]`` over the k steps
      since the warm-up (k inside and outside the softmax, as in the reference);
    - ``p = softmax(T·(DF·RCS + (1 − DF)·ACS))``, then the floor: if a weight falls below
      1/(10T), ``p ← p·(1 − 1/10) + 1/(10T)``; weights are ``T·p`` (sum scale).

    A task with a zero loss in a sampled batch (no labelled row: sparse masked tasks) is left out
    of that step's point, as the reference's slope fit drops zero losses.

    Deviations: the slope of a task with missing points is fitted at the points' true step
    positions (the reference re-indexes the remaining points as consecutive steps);
    weights are on the sum scale (× T; the reference's sum to 1); the ACS window is
    the last ``history`` slopes (the reference slices its slope list by a step offset that ends up
    ``history − warmup + 1`` long); the paper's ``min(DF, 1)`` is not applied, as in the reference.
    Logs w_t and ``divergence_factor``. Reference, history, slopes and weights are checkpointed.
    """

    Config = CoBaConfig
    post_step = "validation_batch"

    def __init__(self, task_names: Sequence[str], config: CoBaConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.register_buffer("reference", torch.zeros(T, dtype=torch.float64))  # full validation losses before training
        self.register_history("history", torch.zeros(0, T, dtype=torch.float64))  # normalised sampled losses, one per step
        self.register_history("task_slopes", torch.zeros(0, T, dtype=torch.float64))
        self.register_history("total_slopes", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("df", torch.ones((), dtype=torch.float64))
        self.register_buffer("last_weights", torch.ones(T))  # persistent: a resumed run keeps its weights

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return (self.last_weights.to(losses) * losses).sum()

    def validation_batches(self) -> int:
        return self.config.sample_batches  # type: ignore[attr-defined]

    def has_reference(self) -> bool:
        return bool((self.reference > 0).any())

    def set_reference(self, val_losses: Tensor) -> None:
        """Tasks with a zero (no labelled row) loss keep an unknown (0) reference until a
        sampled batch has rows for them."""
        v = val_losses.detach().to(self.reference)
        self.reference.copy_(torch.where(v > 0, v, self.reference))

    def after_step(self, losses: Tensor, step: int) -> None:
        """(T,) losses of this step's sampled validation batch; a zero loss (no labelled row for the
        task in the batch) is recorded as missing (NaN), as the reference drops zero losses."""
        cfg: CoBaConfig = self.config  # type: ignore[assignment]
        losses = losses.detach().to(self.reference)
        present = (losses != 0) & torch.isfinite(losses)
        self.reference.copy_(torch.where(present & (self.reference <= 0), losses, self.reference))
        v = torch.where(present & (self.reference > 0), losses / self.reference.clamp_min(1e-12), torch.nan)
        self.history = torch.cat([self.history, v[None]])[-cfg.history :]
        self.steps_seen += 1
        if int(self.steps_seen) < cfg.warmup_steps:
            return
        self.task_slopes = torch.cat([self.task_slopes, slope(self.history)[None]])[-cfg.history :]
        # the largest task loss per step, over the tasks present (NaN when none was)
        top = torch.nan_to_num(self.history, nan=-torch.inf).max(1).values
        top = torch.where(torch.isinf(top), torch.nan, top)
        self.total_slopes = torch.cat([self.total_slopes, slope(top[:, None])])
        p, df = coba_weights(self.task_slopes, self.total_slopes, cfg.tau)
        self.df.fill_(df)
        T = p.shape[0]
        floor = 1.0 / (10 * T)
        if bool((p < floor).any()):
            p = p * (1 - floor * T) + floor
        self.last_weights = (T * p).float().to(self.last_weights.device)

    def diagnostics(self) -> dict[str, float]:
        return {"divergence_factor": float(self.df)}
