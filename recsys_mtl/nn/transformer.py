"""Pre-norm transformer blocks over the tokens of one row (never across rows of a batch).

Attention runs over the token axis of a (B, N, d) tensor, so each row's output depends only on
that row: a prediction does not change with the rest of its batch (the property serving needs,
and which inter-sample attention, as in SAINT or MultiTab's reference code, would break).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def additive_mask(allowed: Tensor) -> Tensor:
    """(N, N) bool, ``True`` = may attend → (N, N) float, 0 where allowed and -inf elsewhere.

    Models build it once (a buffer): a bool mask would be turned into this on every call, and
    a float mask with no attention dropout keeps ``scaled_dot_product_attention`` on its fused
    CPU kernel. Every row must allow at least one column (else its softmax is NaN).
    """
    if not bool(allowed.any(dim=-1).all()):
        raise ValueError("attention mask: every token must be allowed to attend to at least one token")
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


class SelfAttention(nn.Module):
    """Multi-head self-attention: (B, N, d) tokens, optional (N, N) additive float mask → (B, N, d).

    ``mask[i, j]`` is added to the score of token ``i`` attending to token ``j`` (0 = allowed,
    -inf = not; see :func:`additive_mask`). Uses ``F.scaled_dot_product_attention``: with no
    attention dropout it runs PyTorch's fused kernel (no B×heads×N×N probabilities kept for
    backward, no dropout RNG), and it exports to ONNX as plain MatMul/Softmax nodes.
    """

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_token {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if mask is not None and mask.dtype != q.dtype:  # mixed precision: the mask follows q
            mask = mask.to(q.dtype)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(h.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    """(B, N, d) → (B, N, d): Linear → GELU or ReGLU → Dropout → Linear."""

    def __init__(self, d: int, hidden: int, kind: Literal["gelu", "reglu"], dropout: float):
        super().__init__()
        self.reglu = kind == "reglu"
        # ReGLU (FT-Transformer) splits a 2·hidden projection into value and ReLU gate
        self.inp = nn.Linear(d, hidden * (2 if self.reglu else 1))
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        if self.reglu:
            a, g = h.chunk(2, dim=-1)
            h = a * torch.relu(g)
        else:
            h = self.act(h)
        return self.out(self.dropout(h))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + FFN(LN(x)); (B, N, d) → (B, N, d).

    ``first=True`` drops the first LayerNorm (FT-Transformer does so for its first block, whose
    input tokens are fresh embeddings).
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        ffn_hidden: int,
        ffn: Literal["gelu", "reglu"] = "gelu",
        attention_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        residual_dropout: float = 0.0,
        first: bool = False,
    ):
        super().__init__()
        self.norm1: nn.Module = nn.Identity() if first else nn.LayerNorm(d)
        self.attn = SelfAttention(d, n_heads, attention_dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn_hidden, ffn, ffn_dropout)
        self.drop = nn.Dropout(residual_dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class InterSampleAttention(nn.Module):
    """Attention across the rows of a batch (SAINT's intersample attention, Somepalli et al.
    2021, as MultiTab-Net's reference code uses with ``att_type: row_col``).

    (B, N, d) → (B, N, d): each row's N·d token vector is one element of a length-B sequence;
    pre-norm, multi-head attention over the B rows in an ``inner_dim`` space, residual. A row's
    output therefore depends on the other rows of its batch. Choice: no feed-forward after it
    (SAINT adds one of width 4·N·d); the row-wise block that follows has its own.
    """

    def __init__(self, n_tokens: int, d: int, n_heads: int, inner_dim: int):
        super().__init__()
        if inner_dim % n_heads:
            raise ValueError(f"row attention dim {inner_dim} is not divisible by n_heads {n_heads}")
        width = n_tokens * d
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * inner_dim)
        self.out = nn.Linear(inner_dim, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        flat = self.norm(x.reshape(1, b, n * d))
        q, k, v = self.qkv(flat).view(1, b, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 3 × (1, H, B, dh)
        h = F.scaled_dot_product_attention(q, k, v)  # (1, H, B, dh)
        return x + self.out(h.transpose(1, 2).reshape(b, -1)).view(b, n, d)
