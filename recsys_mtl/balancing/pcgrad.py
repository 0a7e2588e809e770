"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020).

Default ``on: shared_parameters``, as in the paper and its code (and LibMTL, which refuses
representation gradients for PCGrad): projecting gradients of a representation does not make
the resulting parameter update conflict-free. ``on: representation`` is the cheaper option.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS
from recsys_mtl.balancing.gradients import ParameterGradientConfig, GradientBalancer


def pcgrad_matrix(K: Tensor, orders: Sequence[Sequence[int]]) -> tuple[Tensor, int]:
    """Coefficients C (T, T) of the projected gradients, ``g_i^PC = Σ_s C[i, s]·g_s``.

    For each task i, in ``orders[i]``: when ⟨g_i^PC, g_j⟩ < 0, remove g_i^PC's component along the
    original g_j. Works on the Gram matrix K (T, T) only. Returns C and the number of projections.
    """
    T = K.shape[0]
    C = torch.eye(T, dtype=K.dtype)
    projections = 0
    for i in range(T):
        for j in orders[i]:
            if j == i:
                continue
            dot = C[i] @ K[:, j]
            if dot < 0 and K[j, j] > 0:
                C[i, j] -= dot / K[j, j]
                projections += 1
    return C, projections


class PCGradConfig(ParameterGradientConfig):
    pass


@BALANCERS.register("pcgrad")
class PCGrad(GradientBalancer):
    """Each task's gradient on the shared parameters (or representation) loses its component along any other
    task's gradient it conflicts with (negative inner product), tasks in random order; the
    projected gradients are summed. Towers get their own task's plain gradient.
    Logs the effective coefficient of each task's gradient and ``conflict_rate`` (share of
    ordered pairs projected in the step)."""

    Config = PCGradConfig

    def __init__(self, task_names: Sequence[str], config: PCGradConfig):
        super().__init__(task_names, config)
        self.conflict_rate = 0.0

    def coefficients(self, K: Tensor, losses: Tensor) -> Tensor:
        T = K.shape[0]
        K = K.cpu()
        orders = [torch.randperm(T).tolist() for _ in range(T)]
        C, n = pcgrad_matrix(K, orders)
        self.conflict_rate = n / max(T * (T - 1), 1)
        return C.sum(0)

    def diagnostics(self) -> dict[str, float]:
        return {"conflict_rate": self.conflict_rate}
