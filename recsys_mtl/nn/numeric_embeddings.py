"""Per-feature numeric embeddings for transformer tokens: (B, M) numbers → (B, M, d_token).

Both encodings come from ``rtdl-num-embeddings`` (Gorishniy et al., "On Embeddings for Numerical
Features in Tabular Deep Learning", NeurIPS 2022), the authors' own package; both export to ONNX
(legacy and dynamo exporters, checked in tests/test_multitab.py):

- ``linear``: ``x_f · w_f + b_f`` per feature (FT-Transformer's numeric tokenizer).
- ``periodic``: PLR, ``ReLU(Linear([cos(2π c_f x), sin(2π c_f x)]))`` with learned frequencies
  ``c_f`` per feature (``lite`` shares the linear layer across features).

Missing-value indicators are 0/1 flags, for which a periodic code has nothing to add, so they
always get the linear embedding.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from rtdl_num_embeddings import LinearEmbeddings, PeriodicEmbeddings
from torch import Tensor, nn


class NumericEmbeddingConfig(BaseModel):
    """How numeric columns become tokens (a model param: ``numeric_embedding: {kind: periodic}``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["linear", "periodic"] = "linear"
    #: periodic only: number of frequencies per feature and the init scale σ of c_f ~ N(0, σ²)
    n_frequencies: int = Field(16, ge=1)
    frequency_init_scale: float = Field(0.1, gt=0)
    lite: bool = False


def _linear(n: int, d: int, cfg: NumericEmbeddingConfig) -> nn.Module:
    return LinearEmbeddings(n, d)


def _periodic(n: int, d: int, cfg: NumericEmbeddingConfig) -> nn.Module:
    return PeriodicEmbeddings(
        n, d, n_frequencies=cfg.n_frequencies, frequency_init_scale=cfg.frequency_init_scale, lite=cfg.lite
    )


#: kind → builder(n_features, d_token, cfg)
NUMERIC_EMBEDDINGS: dict[str, Callable[[int, int, NumericEmbeddingConfig], nn.Module]] = {
    "linear": _linear,
    "periodic": _periodic,
}


class NumericTokens(nn.Module):
    """(B, n_values + n_indicators) numeric matrix → (B, n_values + n_indicators, d_token).

    The first ``n_values`` columns are numbers (encoded with ``cfg.kind``), the rest 0/1 missing
    indicators (linear), matching the column order of the encoded ``numeric`` tensor.
    """

    def __init__(self, n_values: int, n_indicators: int, d_token: int, cfg: NumericEmbeddingConfig):
        super().__init__()
        self.n_values = n_values
        self.values = NUMERIC_EMBEDDINGS[cfg.kind](n_values, d_token, cfg) if n_values else None
        self.indicators = LinearEmbeddings(n_indicators, d_token) if n_indicators else None

    def forward(self, x: Tensor) -> Tensor:
        parts = []
        if self.values is not None:
            parts.append(self.values(x[:, : self.n_values]))
        if self.indicators is not None:
            parts.append(self.indicators(x[:, self.n_values :]))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
