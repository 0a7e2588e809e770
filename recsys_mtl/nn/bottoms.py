"""Task-specific bottoms: per-task reweighting of feature fields before the shared model.

:class:`TaskSENet` is the task representation refinement of DTRN (Liu et al., "Deep
Task-specific Bottom Representation Network for Multi-Task Recommendation", CIKM 2023) in its
SENet form (Hu et al., 2018; as used on feature fields by FiBiNET): each task squeezes every
field to one number, excites them through its own two-layer bottleneck and rescales the fields,
so every task sees its own view of the shared embeddings.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class TaskSENet(nn.Module):
    """(B, D) concatenated fields of widths ``field_dims`` → (T, B, D), one reweighted copy per task.
    A (T, B, D) input (fields already task-specific, e.g. DTRN's per-task interest vectors) gives
    task t's weights on its own slice.

    Per task t: z = field means (B, F); w_t = 2·sigmoid(W2_t · ReLU(W1_t · z + b1_t) + b2_t)
    (B, F); each field f is multiplied by w_t[:, f]. Choice: ``2·sigmoid`` rather than FiBiNET's
    ReLU so the weights start at 1 (W2 starts at 0: the bottom is the identity at init) and can
    amplify as well as damp a field; the same scale HoME's feature gates use.
    """

    def __init__(self, field_dims: Sequence[int], num_tasks: int, reduction: int = 4):
        super().__init__()
        if not field_dims or min(field_dims) < 1:
            raise ValueError("TaskSENet needs at least one field of width >= 1")
        f = len(field_dims)
        r = max(1, f // reduction)
        self.field_dims = list(field_dims)
        dims = torch.tensor(self.field_dims)
        owner = torch.repeat_interleave(torch.arange(f), dims)  # (D,) field of each column
        expand = torch.nn.functional.one_hot(owner, f).T.float()  # (F, D)
        # fixed matrices, so squeeze and expand are plain MatMuls in an exported graph
        self.register_buffer("expand", expand, persistent=False)
        self.register_buffer("squeeze", (expand / dims.unsqueeze(1)).T.contiguous(), persistent=False)  # (D, F)
        self.w1 = nn.Parameter(torch.randn(num_tasks, f, r) / f**0.5)
        self.b1 = nn.Parameter(torch.zeros(num_tasks, 1, r))
        self.w2 = nn.Parameter(torch.zeros(num_tasks, r, f))
        self.b2 = nn.Parameter(torch.zeros(num_tasks, 1, f))
        self.last_weights: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.squeeze  # (B, F) or (T, B, F)
        a = torch.relu(torch.einsum("bf,tfr->tbr" if x.dim() == 2 else "tbf,tfr->tbr", z, self.w1) + self.b1)  # (T, B, R)
        w = 2.0 * torch.sigmoid(torch.einsum("tbr,trf->tbf", a, self.w2) + self.b2)  # (T, B, F)
        self.last_weights = w.detach()
        return (x.unsqueeze(0) if x.dim() == 2 else x) * (w @ self.expand)  # (T, B, D)
