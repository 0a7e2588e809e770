"""Kernel pooling of similarities: K-NRM's soft histogram (Xiong et al., "End-to-End Neural Ad-hoc
Ranking with Kernel Pooling", SIGIR 2017), one query term against a window of items.

For a row with similarities ``s_p`` (p over the window's non-missing entries, n of them) and the
RBF kernels ``K_k(s) = exp(-(s - mu_k)² / (2 sigma²))``, output k is ``Σ_p K_k(s_p) / max(n, 1)``:
the (soft) share of the window's items whose similarity lies near ``mu_k``. A kernel at a high mu
counts the history items really close to the candidate, which a mean or max of similarities blurs.

Deviations from K-NRM:

- one query term (the candidate) instead of a query's words, so there is no sum over query terms;
- the soft term frequency is divided by the window's non-missing entries (a share in [0, 1],
  comparable across history lengths) instead of taken as ``log`` of the sum; the share is then
  standardised with train statistics like every numeric column;
- the similarities are fixed at fit time (cosine of co-occurrence counts), not learned embeddings,
  and the kernels are fixed inputs of the network rather than a layer trained end to end;
- one ``sigma`` for every kernel (K-NRM uses 0.1, and 1e-3 for its exact-match kernel at mu = 1;
  exact matches are the ``match`` kind's business here).

Computed as polars aggregations over the exploded window (:func:`kernel_sums`) and as ONNX
operators over the (B, W) similarity matrix (:func:`graph_kernel_shares`), both in float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.strict import StrictModel

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

#: the most kernels one feature may declare (one numeric column each)
MAX_KERNELS = 32


class Kernels(StrictModel):
    """RBF kernels over a similarity in [0, 1] (K-NRM kernel pooling)."""

    mu: tuple[float, ...] = Field((0.1, 0.3, 0.5, 0.7, 0.9), min_length=1, max_length=MAX_KERNELS)
    """kernel centres on the similarity, each in [-1, 1], distinct; output `kernel<k>` is the share of the window near mu[k]"""
    sigma: float = Field(0.1, gt=0, le=1)
    """kernel width: an item at distance d from a centre counts exp(-d² / (2 sigma²)) toward that kernel"""

    @model_validator(mode="after")
    def _check(self) -> "Kernels":
        if any(not -1.0 <= m <= 1.0 for m in self.mu):
            raise ValueError(f"mu: {list(self.mu)}: every centre must lie in [-1, 1] (similarities are cosines)")
        if len(set(self.mu)) != len(self.mu):
            raise ValueError(f"mu: {list(self.mu)} lists a centre twice")
        return self

    def names(self) -> list[str]:
        """Output names, one per kernel: ``kernel0`` .. ``kernel{K-1}`` (in ``mu``'s order)."""
        return [f"kernel{k}" for k in range(len(self.mu))]

    @property
    def scale(self) -> float:
        """-1 / (2 sigma²): the factor of the squared distance inside ``exp``."""
        return -1.0 / (2.0 * self.sigma * self.sigma)


def kernel_sums(k: Kernels, sim: pl.Expr, valid: pl.Expr) -> dict[str, pl.Expr]:
    """Per-row aggregations (inside ``group_by(row).agg``): output name → Σ_p valid_p · K_k(s_p).

    ``sim``: float64 similarity per exploded window entry; ``valid``: 1.0 for a non-missing entry,
    else 0.0 (a missing entry counts toward no kernel)."""
    return {name: ((((sim - mu) * (sim - mu)) * k.scale).exp() * valid).sum()
            for name, mu in zip(k.names(), k.mu)}


def graph_kernel_shares(b: GraphBuilder, k: Kernels, sims: str, valid: str, n1: str, hint: str) -> dict[str, str]:
    """ONNX: (B, W) double similarities and validity (1.0 / 0.0), (B,) double max(n, 1) →
    output name → (B,) double kernel share, the same arithmetic as :func:`kernel_sums` / n1."""
    axis2 = b.const(np.array([2], np.int64), f"{hint}.axis2")
    mu = b.const(np.asarray(k.mu, np.float64), f"{hint}.mu")  # (K,)
    diff = b.op("Sub", [b.op("Unsqueeze", [sims, axis2], f"{hint}.s3"), mu], f"{hint}.diff")  # (B, W, K)
    scaled = b.op("Mul", [b.op("Mul", [diff, diff], f"{hint}.sq"), b.const(np.array(k.scale), f"{hint}.scale")],
                  f"{hint}.scaled")
    counted = b.op("Mul", [b.op("Exp", [scaled], f"{hint}.rbf"), b.op("Unsqueeze", [valid, axis2], f"{hint}.v3")],
                   f"{hint}.counted")
    sums = b.op("ReduceSum", [counted, b.const(np.array([1], np.int64), f"{hint}.axis1")], f"{hint}.sums", keepdims=0)  # (B, K)
    shares = b.op("Div", [sums, b.op("Unsqueeze", [n1, b.const(np.array([1], np.int64), f"{hint}.axis1b")], f"{hint}.n2")],
                  f"{hint}.shares")
    return {name: b.op("Gather", [shares, b.const(np.array(i, np.int64), f"{hint}.k{i}")], f"{hint}.{name}", axis=1)
            for i, name in enumerate(k.names())}
