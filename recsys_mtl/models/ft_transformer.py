"""FT-Transformer (Gorishniy et al., NeurIPS 2021) as a multitask baseline: one CLS token, T heads.

Feature tokens as in MultiTab-Net (:mod:`recsys_mtl.models.multitab`) but linear numeric
embeddings by default (the paper's tokenizer), a single learned CLS token appended after the
features, no attention mask, ReGLU feed-forwards, no LayerNorm before the first block's
attention (the paper's choice), and the paper's head: LayerNorm → ReLU on the CLS token. The
only multitask part is the end: every task's tower reads the same CLS representation, which makes
it the "one shared token" counterpart of MultiTab-Net's one token per task. As in the paper's
code, the last block computes the CLS token only (its query, attention and feed-forward; keys and
values from every token), the one token read after it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.models.base import ModelContext, MultiTaskModel
from recsys_mtl.models.multitab import TransformerConfig, build_blocks
from recsys_mtl.models.registry import register
from recsys_mtl.nn.encoders import FeatureTokenizer
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig


class FTTransformerConfig(TransformerConfig):
    d_token: int = Field(64, ge=1)
    """token width"""
    n_heads: int = Field(8, ge=1)
    """attention heads (must divide d_token)"""
    ffn_hidden: int = Field(86, ge=1)  # ≈ 4/3 · d_token, the paper's ReGLU width
    """feed-forward hidden width (≈ 4/3 · d_token)"""
    ffn: Literal["gelu", "reglu"] = "reglu"
    """feed-forward kind: reglu or gelu"""
    # the paper's 0.2 is one parameter away; off by default for step time (see TransformerConfig)
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout on attention weights (paper: 0.2; > 0: slower steps, RNG over B×heads×N×N)"""
    ffn_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """dropout inside the feed-forward"""


@register("ft_transformer")
class FTTransformer(MultiTaskModel):
    """FT-Transformer: feature tokens + one CLS token; every task tower reads the CLS token.

    Encoded batch → tokens (B, F + 1, d_token) → ``n_blocks`` blocks → CLS (B, d_token) →
    LayerNorm → ReLU → one tower per task.
    """

    Config = FTTransformerConfig
    encoder_options = MultiTaskModel.encoder_options | {"numeric_embedding"}
    #: numeric tokens when ``encoder.numeric_embedding`` is not set: linear, as in the paper
    default_numeric_embedding = NumericEmbeddingConfig(kind="linear")

    def __init__(self, context: ModelContext, config: FTTransformerConfig):
        super().__init__(context, config)
        self.tokenizer = FeatureTokenizer(context.layout, config.d_token, context.encoder.numeric_embedding or self.default_numeric_embedding,
                                          context.encoder.id_dropout)
        if context.encoder.id_regularization is not None:
            self.tokenizer.encoder.regularize_ids(context.encoder.id_regularization)
        self.cls = nn.Parameter(torch.randn(1, 1, config.d_token) * 0.02)
        self.blocks = build_blocks(config, first_prenorm=False)
        self.head = nn.Sequential(nn.LayerNorm(config.d_token), nn.ReLU())
        self.build_towers([config.d_token] * len(self.task_names))

    def shared_module(self) -> nn.Module:
        """The CLS head: its (B, d) output is what every task tower reads."""
        return self.head

    def shared_parameters(self) -> list[nn.Parameter]:
        """The blocks, the CLS token and the head: everything between the embeddings and the towers."""
        return [*self.blocks.parameters(), self.cls, *self.head.parameters()]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        feats = self.tokenizer(batch)
        h = torch.cat([feats, self.cls.expand(feats.shape[0], -1, -1)], dim=1)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # only the CLS token of the last block is read: compute just it (the paper's code does the same)
            h = block(h, queries=slice(-1, None) if i == last else None)
        cls = self.head(h[:, -1])
        return self.towers([cls] * len(self.task_names))
