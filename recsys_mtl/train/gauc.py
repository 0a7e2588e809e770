"""Grouped AUC (GAUC): the AUC within each group (e.g. each user), averaged with impression weights.

A ranking model serves one user at a time, so what matters is how it orders one user's
candidates; the global AUC also rewards separating users from each other. GAUC as defined with
DIN (Zhou et al., KDD 2018, eq. 1): ``GAUC = Σ_g n_g · AUC_g / Σ_g n_g`` with ``n_g`` the
group's impressions (rows), over the groups that hold both classes (an AUC is undefined for a
group with one class, so such groups are skipped, rows and all).
"""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics as tm
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat


def grouped_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """(N,) scores, (N,) 0/1 labels, (N,) int group codes → (GAUC, groups counted).

    Ties in score get the mean rank (an AUC of 0.5 between tied pairs), as the Mann-Whitney
    statistic does. Group code 0 means "no group": those rows are ignored. Returns NaN when no
    group holds both classes.
    """
    keep = groups != 0
    s, y, g = scores[keep].astype(np.float64), labels[keep].astype(np.int64), groups[keep].astype(np.int64)
    if s.size == 0:
        return float("nan"), 0
    order = np.lexsort((s, g))  # by group, then score
    s, y, g = s[order], y[order], g[order]
    # runs of equal (group, score) share the mean of their 1-based within-group ranks
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_tie = new_group | np.r_[True, s[1:] != s[:-1]]
    group_id = np.cumsum(new_group) - 1
    tie_id = np.cumsum(new_tie) - 1
    group_start = np.flatnonzero(new_group)
    pos_in_group = np.arange(s.size) - group_start[group_id] + 1.0
    tie_sum = np.bincount(tie_id, weights=pos_in_group)
    tie_len = np.bincount(tie_id)
    rank = (tie_sum / tie_len)[tie_id]
    n = np.bincount(group_id).astype(np.float64)
    n_pos = np.bincount(group_id, weights=y.astype(np.float64))
    n_neg = n - n_pos
    rank_pos = np.bincount(group_id, weights=rank * y)
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan"), 0
    auc = (rank_pos[both] - n_pos[both] * (n_pos[both] + 1) / 2) / (n_pos[both] * n_neg[both])
    return float((auc * n[both]).sum() / n[both].sum()), int(both.sum())


class GroupedAUROC(tm.Metric):
    """torchmetrics wrapper of :func:`grouped_auc`; ``update(probs (B,), target (B,), groups (B,))``.

    Rows are kept (concatenated across batches and, under DDP, across ranks) until ``compute``,
    as torchmetrics' exact AUROC does.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, target: Tensor, groups: Tensor) -> None:  # type: ignore[override]
        self.scores.append(scores.detach().float().flatten())  # type: ignore[attr-defined]
        self.target.append(target.detach().long().flatten())  # type: ignore[attr-defined]
        self.groups.append(groups.detach().long().flatten())  # type: ignore[attr-defined]

    def compute(self) -> Tensor:
        value, _ = grouped_auc(
            dim_zero_cat(self.scores).cpu().numpy(),  # type: ignore[attr-defined]
            dim_zero_cat(self.target).cpu().numpy(),  # type: ignore[attr-defined]
            dim_zero_cat(self.groups).cpu().numpy(),  # type: ignore[attr-defined]
        )
        return torch.tensor(value)
