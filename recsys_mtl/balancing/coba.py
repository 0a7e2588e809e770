"""CoBa: convergence balancer from validation-loss slopes (Gong et al., EMNLP 2024)."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext


def slope(values: Tensor) -> Tensor:
    """(N, T) series → (T,) least-squares slope per column against 0..N−1."""
    n = values.shape[0]
    x = torch.arange(n, dtype=values.dtype)
    x = x - x.mean()
    return (x[:, None] * (values - values.mean(0))).sum(0) / (x * x).sum()


class CoBaConfig(BalancerConfig):
    #: validation points the slopes are fitted on (the paper's window N); weights stay equal
    #: until this many validations have been seen
    window: int = Field(3, ge=2)
    #: sharpness τ of the divergence factor's softmax over the history of the largest slope
    temperature: float = Field(5.0, gt=0)


@BALANCERS.register("coba")
class CoBa(Balancer):
    """Weights from the slopes α_t of each task's normalised validation loss over the last N
    validations (called from ``on_validation_end``):

    - relative convergence score ``RCS = softmax_t(T·α_t / Σ_s|α_s|)``: a task converging more
      slowly than the others (flatter or rising loss) gets more weight;
    - absolute convergence score ``ACS = softmax_t(−N·α_t / Σ_{j∈last N}|α_t(j)|)``: a task whose
      slope turns up against its own history (diverging) gets less weight;
    - divergence factor ``DF = min(k·softmax_j(−τ·α_max(j) / Σ_i|α_max(i)|)[k], 1)`` over the k
      validations so far: 1 while the largest slope keeps falling (RCS rules), below 1 when it
      rises (ACS takes over);
    - ``w = T·(DF·RCS + (1 − DF)·ACS)``.

    Logs w_t and ``divergence_factor``.
    """

    Config = CoBaConfig

    def __init__(self, task_names: Sequence[str], config: CoBaConfig):
        super().__init__(task_names, config)
        self.val_history: list[Tensor] = []  # normalised (T,) validation losses
        self.slope_history: list[Tensor] = []  # (T,) slopes, one per validation with enough points
        self.divergence_factor = 1.0

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return (self.last_weights.to(losses) * losses).sum()

    def on_validation_end(self, val_losses: Tensor, epoch: int) -> None:
        cfg: CoBaConfig = self.config  # type: ignore[assignment]
        v = val_losses.detach().double().cpu()
        if not self.val_history:
            self._first = v.clamp_min(1e-12)
        self.val_history.append(v / self._first)
        if len(self.val_history) < cfg.window:
            return
        T = v.shape[0]
        a = slope(torch.stack(self.val_history[-cfg.window :]))
        self.slope_history.append(a)
        rcs = torch.softmax(T * a / a.abs().sum().clamp_min(1e-12), 0)
        recent = torch.stack(self.slope_history[-cfg.window :])
        acs = torch.softmax(-recent.shape[0] * a / recent.abs().sum(0).clamp_min(1e-12), 0)
        a_max = torch.stack([s.max() for s in self.slope_history])
        k = len(a_max)
        sm = torch.softmax(-cfg.temperature * a_max / a_max.abs().sum().clamp_min(1e-12), 0)
        df = min(float(k * sm[-1]), 1.0)
        self.divergence_factor = df
        w = T * (df * rcs + (1 - df) * acs)
        self.last_weights = w.float().to(self.last_weights.device)

    def diagnostics(self) -> dict[str, float]:
        return {"divergence_factor": self.divergence_factor}
