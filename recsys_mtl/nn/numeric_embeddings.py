"""Per-feature numeric embeddings: (B, M) numbers → (B, M, d).

All encodings come from ``rtdl-num-embeddings`` (Gorishniy et al., "On Embeddings for Numerical
Features in Tabular Deep Learning", NeurIPS 2022), the authors' own package; all export to ONNX
(checked in tests/models/test_multitab.py and tests/nn/test_numeric_embeddings.py):

- ``linear``: ``x_f · w_f + b_f`` per feature (FT-Transformer's numeric tokenizer).
- ``periodic``: PLR, ``ReLU(Linear([cos(2π c_f x), sin(2π c_f x)]))`` with learned frequencies
  ``c_f`` per feature (``lite`` shares the linear layer across features).
- ``piecewise_linear``: PLE, the value encoded against quantile bins of the train split
  (``[1, …, 1, (x - left)/width, 0, …, 0]``) then a linear layer per feature; version ``B``
  (the TabM paper's preset: a linear term plus a zero-initialised PLE term) unless set otherwise.
  The bins are the train quantiles stored in the fitted preprocessing (``Layout.numeric_quantiles``),
  so they are fitted state, never recomputed from other data.

Missing-value indicators are 0/1 flags, for which these codes have nothing to add, so they
always get the linear embedding (tokens) or stay as they are (flat encoders).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from pydantic import Field
from rtdl_num_embeddings import LinearEmbeddings, PeriodicEmbeddings, PiecewiseLinearEmbeddings
from torch import Tensor, nn

from recsys_mtl.errors import SpecError
from recsys_mtl.strict import ParamsModel


class NumericEmbeddingConfig(ParamsModel):
    """How numeric columns are embedded (an encoder option: ``numeric_embedding: {kind: periodic}``)."""

    kind: Literal["linear", "periodic", "piecewise_linear"] = "linear"
    """linear, periodic (PLR) or piecewise_linear (PLE on train quantile bins)"""
    d_embedding: int = Field(8, ge=1)
    """flat-input models only: size of each numeric feature's embedding (token models use d_token)"""
    n_frequencies: int = Field(16, ge=1)
    """periodic only: frequencies per feature"""
    frequency_init_scale: float = Field(0.1, gt=0)
    """periodic only: init scale σ of the frequencies, c_f ~ N(0, σ²)"""
    lite: bool = False
    """periodic only: share the linear layer after the periodic terms across features (rtdl's lite variant)"""
    n_bins: int = Field(32, ge=2, le=64)
    """piecewise_linear only: quantile bins (at most; repeated quantiles merge)"""
    version: Literal["A", "B"] = "B"
    """piecewise_linear only: the rtdl version preset (A or B)"""
    activation: bool = False
    """piecewise_linear only: a ReLU after the embedding"""




def quantile_bins(quantiles: Sequence[float], n_bins: int) -> Tensor:
    """Bin edges for one feature: ``n_bins + 1`` of the stored quantiles, repeats merged (≥ 2 edges)."""
    q = torch.tensor(list(quantiles), dtype=torch.float32)
    pick = torch.linspace(0, len(q) - 1, n_bins + 1).round().long()
    edges = torch.unique(q[pick])
    if len(edges) < 2:  # a constant column: one unit bin, so the encoding is finite
        edges = torch.cat([edges[:1], edges[:1] + 1.0])
    return edges


def _linear(n: int, d: int, cfg: NumericEmbeddingConfig, quantiles: Sequence[Sequence[float]] | None) -> nn.Module:
    return LinearEmbeddings(n, d)


def _periodic(n: int, d: int, cfg: NumericEmbeddingConfig, quantiles: Sequence[Sequence[float]] | None) -> nn.Module:
    return PeriodicEmbeddings(
        n, d, n_frequencies=cfg.n_frequencies, frequency_init_scale=cfg.frequency_init_scale, lite=cfg.lite
    )


def _piecewise_linear(n: int, d: int, cfg: NumericEmbeddingConfig, quantiles: Sequence[Sequence[float]] | None) -> nn.Module:
    if quantiles is None or len(quantiles) != n:
        raise SpecError(
            "numeric_embedding: piecewise_linear needs train quantiles of every numeric column in the "
            "fitted preprocessing (refit the preprocessing with this version)"
        )
    bins = [quantile_bins(q, cfg.n_bins) for q in quantiles]
    return PiecewiseLinearEmbeddings(bins, d, activation=cfg.activation, version=cfg.version)


#: kind → builder(n_features, d, cfg, train quantiles per feature or None)
NUMERIC_EMBEDDINGS: dict[str, Callable[[int, int, NumericEmbeddingConfig, Sequence[Sequence[float]] | None], nn.Module]] = {
    "linear": _linear,
    "periodic": _periodic,
    "piecewise_linear": _piecewise_linear,
}


def numeric_embedding(n: int, d: int, cfg: NumericEmbeddingConfig, quantiles: Sequence[Sequence[float]] | None = None) -> nn.Module:
    """(B, n) → (B, n, d) with the encoding ``cfg.kind``."""
    return NUMERIC_EMBEDDINGS[cfg.kind](n, d, cfg, quantiles)


class NumericTokens(nn.Module):
    """(B, n_values + n_indicators) numeric matrix → (B, n_values + n_indicators, d_token).

    The first ``n_values`` columns are numbers (encoded with ``cfg.kind``), the rest 0/1 missing
    indicators (linear), matching the column order of the encoded ``numeric`` tensor.
    """

    def __init__(
        self, n_values: int, n_indicators: int, d_token: int, cfg: NumericEmbeddingConfig,
        quantiles: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.n_values = n_values
        self.values = numeric_embedding(n_values, d_token, cfg, quantiles) if n_values else None
        self.indicators = LinearEmbeddings(n_indicators, d_token) if n_indicators else None

    def forward(self, x: Tensor) -> Tensor:
        parts = []
        if self.values is not None:
            parts.append(self.values(x[:, : self.n_values]))
        if self.indicators is not None:
            parts.append(self.indicators(x[:, self.n_values :]))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
