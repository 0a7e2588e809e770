"""MultiTab-Net (Sinodinos & Armanfard, 2025): a transformer over feature tokens + one token per task.

Choices where the paper leaves room (or where this library deliberately departs from it):

- **Row-wise by default.** The reference code's published configurations add inter-sample
  attention (``att_type: row_col``: attention across the rows of a batch after each block).
  Here it is an option (``att_type: row_col``); the default ``row`` keeps a row's prediction
  independent of its batch neighbours, which serving needs. With ``row_col`` a prediction depends
  on the whole batch it is scored in, so: validation and test are scored in the fixed,
  unshuffled evaluation batches (``eval_batch_size``), the tests' batch-independence check does
  not apply, and ``recsys-mtl export`` refuses such a run (the HTTP server micro-batches
  unrelated requests together, so a user's score would depend on other users' requests).
  Inter-sample attention also crosses the multitask mask: it mixes all tokens of other rows.
- **Multitask mask.** Tokens are ordered ``[task_1 … task_T, feature_1 … feature_F]``. By default
  (``mask_task_to_task``) a task token attends to every feature token and to itself but not to
  the other task tokens; feature tokens attend to every token, task tokens included (the paper's
  "T×T" mask). ``mask_feature_to_task`` also stops feature tokens reading task tokens ("F×T");
  with both, the task paths are fully separate: task ``j``'s output cannot depend on task ``k``'s
  token at any depth. With T×T alone, task ``k``'s token can reach task ``j`` from the second
  block on, through the feature tokens that read it.
- **Tokens.** Categorical and pooled multi-hot features: their embedding (projected to
  ``d_token``); numeric columns: a per-feature numeric embedding from ``rtdl-num-embeddings``,
  periodic (PLR) by default; a task token is a learned ``d_token`` vector.
- **Blocks.** Pre-norm (LayerNorm → attention → residual, LayerNorm → GELU FFN → residual) as in
  the reference encoder layer; a final LayerNorm on each task token before its tower.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.models.base import ModelConfig, ModelContext, MultiTaskModel
from recsys_mtl.models.registry import register
from recsys_mtl.nn.encoders import FeatureTokenizer
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig
from recsys_mtl.nn.transformer import InterSampleAttention, TransformerBlock, additive_mask


class TransformerConfig(ModelConfig):
    """Parameters shared by the transformer families (MultiTab-Net, FT-Transformer)."""

    d_token: int = Field(32, ge=1)
    """token width (categorical embeddings are projected to it)"""
    n_blocks: int = Field(3, ge=1)
    """transformer blocks"""
    n_heads: int = Field(2, ge=1)
    """attention heads (must divide d_token); MultiTab-Net's 2 heads of 16 (not 4 of 8): same census AUC, a shorter
    CPU step (docs/benchmarks.md)"""
    ffn_hidden: int = Field(64, ge=1)
    """feed-forward hidden width"""
    ffn: Literal["gelu", "reglu"] = "gelu"
    """feed-forward kind: gelu or reglu"""
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout on attention weights; off by default: > 0 needs RNG over B×heads×N×N and leaves the CPU's
    batched-matmul attention for scaled_dot_product_attention's unfused path (much slower steps)"""
    ffn_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout inside the feed-forward"""
    residual_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout on each residual branch"""


def build_blocks(cfg: TransformerConfig, first_prenorm: bool = True) -> nn.ModuleList:
    return nn.ModuleList(
        TransformerBlock(
            cfg.d_token,
            cfg.n_heads,
            cfg.ffn_hidden,
            cfg.ffn,
            cfg.attention_dropout,
            cfg.ffn_dropout,
            cfg.residual_dropout,
            first=(i == 0 and not first_prenorm),
        )
        for i in range(cfg.n_blocks)
    )


def multitask_mask(num_tasks: int, num_features: int, task_to_task: bool, feature_to_task: bool) -> Tensor:
    """(N, N) bool, ``True`` = row token may attend to column token; tasks first, then features.

    ``task_to_task`` forbids task tokens to attend to other task tokens (each keeps itself);
    ``feature_to_task`` forbids feature tokens to attend to task tokens.
    """
    n = num_tasks + num_features
    allowed = torch.ones(n, n, dtype=torch.bool)
    if task_to_task:
        allowed[:num_tasks, :num_tasks] = torch.eye(num_tasks, dtype=torch.bool)
    if feature_to_task:
        allowed[num_tasks:, :num_tasks] = False
    return allowed


class MultiTabConfig(TransformerConfig):
    mask_task_to_task: bool = True
    """task tokens do not attend to other task tokens"""
    mask_feature_to_task: bool = False
    """feature tokens do not attend to task tokens"""
    att_type: Literal["row", "row_col"] = "row"
    """`row`: attention within a row only; `row_col`: also across the batch's rows after each block (not servable,
    see the class docstring)"""
    row_attention_dim: int = Field(64, ge=1)
    """inner width of the inter-sample attention (`row_col`)"""


@register("multitab")
class MultiTabNet(MultiTaskModel):
    """MultiTab-Net: feature tokens + one learned token per task through masked transformer blocks.

    Encoded batch → tokens (B, T + F, d_token) → ``n_blocks`` masked blocks → LayerNorm → task
    token ``t`` (B, d_token) → tower ``t`` → logits. Only the task tokens leave the last block, so
    (row-wise) it computes their queries, attention and feed-forward only (keys and values from
    every token): the same outputs as the full block, without the F feature tokens' work.
    """

    Config = MultiTabConfig
    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding"}
    #: numeric tokens when ``encoder.numeric_embedding`` is not set: periodic (PLR, rtdl-num-embeddings)
    default_numeric_embedding = NumericEmbeddingConfig(kind="periodic")

    def __init__(self, context: ModelContext, config: MultiTabConfig):
        super().__init__(context, config)
        self.tokenizer = FeatureTokenizer(context.layout, config.d_token, context.encoder.numeric_embedding or self.default_numeric_embedding,
                                          context.encoder.id_dropout)
        if context.encoder.id_regularization is not None:
            self.tokenizer.encoder.regularize_ids(context.encoder.id_regularization)
        t = len(self.task_names)
        self.task_tokens = nn.Parameter(torch.randn(t, config.d_token) * 0.02)
        self.blocks = build_blocks(config)
        self.norm = nn.LayerNorm(config.d_token)
        mask = multitask_mask(t, self.tokenizer.num_tokens, config.mask_task_to_task, config.mask_feature_to_task)
        self.register_buffer("attention_mask", additive_mask(mask), persistent=False)
        n = t + self.tokenizer.num_tokens
        self.inter_sample = nn.ModuleList(
            InterSampleAttention(n, config.d_token, config.n_heads, config.row_attention_dim) for _ in self.blocks
        ) if config.att_type == "row_col" else None
        #: a prediction depends on the other rows of its batch (read by the exporter)
        self.batch_dependent = self.inter_sample is not None
        self.build_towers([config.d_token] * t)

    def shared_module(self) -> nn.Module:
        """The last block; its output holds one token per task, read by that task only: (B, T, d)
        (the last block computes the task tokens only), (B, T + F, d) with ``row_col``."""
        return self.blocks[-1]

    def shared_modules(self) -> list[nn.Module]:
        """The input of the last block, (B, T + F, d) (the tokenizer's (B, F, d) with one block):
        the last tokens every task token attends to. The last block's output is task-specific per
        position (task t's tower reads token t only), so task gradients on it never overlap."""
        return [self.blocks[-2]] if len(self.blocks) > 1 else [self.tokenizer]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every transformer block (their weights serve every task token) and the final norm."""
        return [*self.blocks.parameters(), *self.norm.parameters()]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        feats = self.tokenizer(batch)  # (B, F, d)
        tasks = self.task_tokens.unsqueeze(0).expand(feats.shape[0], -1, -1)  # (B, T, d)
        h = torch.cat([tasks, feats], dim=1)
        t = len(self.task_names)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and self.inter_sample is None:
                # only the task tokens of the last block are read: compute just those (exact)
                h = block(h, self.attention_mask, queries=slice(0, t))  # (B, T, d)
            else:
                h = block(h, self.attention_mask)
            if self.inter_sample is not None:
                h = self.inter_sample[i](h)
        h = self.norm(h[:, :t])  # (B, T, d)
        return self.towers(list(h.unbind(dim=1)))
