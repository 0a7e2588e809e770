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
    it is added to the scores as it is (``baddbmm`` on CPU, ``scaled_dot_product_attention``'s
    fused kernels elsewhere). Every row must allow at least one column (else its softmax is NaN).
    """
    if not bool(allowed.any(dim=-1).all()):
        raise ValueError("attention mask: every token must be allowed to attend to at least one token")
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention: (B, H, Nq, D) queries, (B, H, N, D) keys and values, optional
    additive float mask (Nq, N), or any shape that broadcasts to (B, H, Nq, N) such as a per-row
    key-padding mask (B, 1, 1, N) → (B, H, Nq, D).

    On CPU without attention dropout it runs as two batched matmuls and a softmax (the math of
    ``scaled_dot_product_attention``): with few tokens and narrow heads (census MultiTab-Net: 40
    tokens, heads of 8, 4,096 (row, head) problems per block) PyTorch's fused CPU kernel spends
    its time per problem, and its backward recomputes the softmax; the batched matmuls keep the
    B×H×Nq×N probabilities for backward and took about half the fused kernel's forward +
    backward time at those sizes (docs/benchmarks.md). On accelerators, or with attention
    dropout, it is ``F.scaled_dot_product_attention``.
    """
    if q.device.type != "cpu" or dropout > 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    b, h, nq, dh = q.shape
    n = k.shape[2]
    q, k, v = q.reshape(b * h, nq, dh), k.reshape(b * h, n, dh), v.reshape(b * h, n, dh)
    scale = dh**-0.5
    if mask is None:
        scores = torch.bmm(q, k.transpose(1, 2)) * scale
    else:
        # a shared (Nq, N) mask stays a stride-0 view; a per-row one is materialised per head
        bias = mask.expand(b * h, nq, n) if mask.dim() == 2 else mask.expand(b, h, nq, n).reshape(b * h, nq, n)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)
    return torch.bmm(scores.softmax(-1), v).view(b, h, nq, dh)


class SelfAttention(nn.Module):
    """Multi-head self-attention: (B, N, d) tokens, optional (N, N) additive float mask → (B, N, d).

    ``mask[i, j]`` is added to the score of token ``i`` attending to token ``j`` (0 = allowed,
    -inf = not; see :func:`additive_mask`); see :func:`attention` for the kernel. One fused
    (d → 3d) projection gives queries, keys and values. With ``queries`` (a slice of the token
    axis) only those tokens are queries: the output is (B, Nq, d), the keys and values still come
    from all N tokens, and the query projection runs on the Nq tokens only (a model that reads a
    few tokens of its last block, e.g. the task tokens, skips the rest of that block's work).
    """

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_token {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor | None = None, queries: slice | None = None) -> Tensor:
        b, n, d = x.shape
        h = self.n_heads
        if queries is None:
            q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        else:  # the same weights, split: queries from the selected tokens, keys and values from all
            w, bias = self.qkv.weight, self.qkv.bias
            xq = x[:, queries]
            q = F.linear(xq, w[:d], bias[:d]).view(b, xq.shape[1], h, d // h).transpose(1, 2)
            k, v = F.linear(x, w[d:], bias[d:]).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
            mask = mask[..., queries, :] if mask is not None else None  # (Nq, N), or per-row (B, 1, 1|Nq, N)
        if mask is not None and mask.dtype != q.dtype:  # mixed precision: the mask follows q
            mask = mask.to(q.dtype)
        out = attention(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(b, q.shape[2], d))


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

    def forward(self, x: Tensor, mask: Tensor | None = None, queries: slice | None = None) -> Tensor:
        """``queries``: only those tokens are computed (output (B, Nq, d)); keys/values read all."""
        y = self.norm1(x)
        if queries is not None:
            x = x[:, queries]
        x = x + self.drop(self.attn(y, mask, queries))
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
