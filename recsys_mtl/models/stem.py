"""STEM-Net (Su et al., AAAI 2024): shared and task-specific embedding tables.

The paper's point is that one shared embedding table makes tasks compete inside the embeddings
(negative transfer lives there, not only in the experts). STEM gives every task its own copy of
every table next to a shared copy.

Structure and choices:

- Embeddings: one shared :class:`FeatureEncoder` and one per task (same layout; numeric columns
  enter every encoder unchanged). x_s, x_t: (B, D).
- Experts: ``shared_experts`` experts read x_s; each task has ``task_experts`` experts reading its
  own x_t.
- All Forward, Task-specific Backward (the paper's AFTB gating): task t's softmax gate mixes
  every expert, the shared ones, its own and the other tasks' ones, so the forward pass sees all
  the knowledge; the other tasks' expert outputs enter through a stop-gradient (``detach``), so
  task t's loss only updates the shared and its own embeddings and experts (``stop_gradient:
  false`` removes it, for ablation). The gate reads [x_s, x_t]: the paper leaves the gate input
  open; giving it the other tasks' embeddings too would multiply its width by T for little gain.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.models.base import ModelConfig, ModelContext, MultiTaskModel
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import Gate, ParallelExperts, mix


class STEMConfig(ModelConfig):
    shared_experts: int = Field(1, ge=0)
    """experts on the shared embeddings (S)"""
    task_experts: int = Field(1, ge=1)
    """experts per task on its own embeddings (K)"""
    expert_hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    """expert MLP widths (last = expert output H)"""
    stop_gradient: bool = True
    """other tasks' experts enter task t's mixture detached (AFTB)"""


@register("stem")
class STEM(MultiTaskModel):
    """Shared and Task-specific EMbeddings with AFTB gating.

    Batch → x_s (shared tables), x_t (task t's tables) (B, D) → experts (B, S + T·K, H) →
    task t's gate over all experts (others' detached) → (B, H) → tower t.
    """

    Config = STEMConfig
    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding", "gbdt_leaves", "cross", "id_counts"}

    def __init__(self, context: ModelContext, config: STEMConfig):
        super().__init__(context, config)
        t = len(self.task_names)
        self.encoder = self.make_encoder()  # the shared embeddings
        d = self.encoder.output_dim
        self.task_encoders = nn.ModuleList(self.make_encoder() for _ in range(t))
        args = (d, config.expert_hidden, config.activation, config.dropout)
        self.shared_experts = ParallelExperts(config.shared_experts, *args) if config.shared_experts else None
        self.task_experts = nn.ModuleList(ParallelExperts(config.task_experts, *args) for _ in range(t))
        total = config.shared_experts + t * config.task_experts
        self.gates = nn.ModuleList(Gate(2 * d, total) for _ in range(t))
        self.stop_gradient = config.stop_gradient
        self.build_towers([config.expert_hidden[-1]] * t)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x_s = self.encoder(batch)
        x_t = [enc(batch) for enc in self.task_encoders]
        own = [experts(x) for experts, x in zip(self.task_experts, x_t)]  # T × (B, K, H)
        shared = [self.shared_experts(x_s)] if self.shared_experts is not None else []
        reps = []
        for t, gate in enumerate(self.gates):
            parts = [e if (k == t or not self.stop_gradient) else e.detach() for k, e in enumerate(own)]
            experts = torch.cat(shared + parts, dim=1)  # (B, S + T·K, H)
            reps.append(mix(experts, gate(torch.cat([x_s, x_t[t]], dim=-1))))
        return self.towers(reps)

    def shared_modules(self) -> list[nn.Module]:
        """The shared experts, (B, S, H); the shared embeddings when S = 0. Task experts are
        task-specific under AFTB (other tasks read them through a stop-gradient)."""
        return [self.shared_experts] if self.shared_experts is not None else [self.encoder]
