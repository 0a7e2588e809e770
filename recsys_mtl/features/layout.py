"""Where each feature sits in the encoded tensors: what the encoder is built from.

Filled by the feature kinds (each appends its features' columns, kinds in registry order, features
in spec order within a kind), so the layout of the three original kinds is that of the per-kind
chains it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Layout:
    """Where each feature sits in the encoded tensors; what the encoder is built from."""

    #: (feature, table) per column of the categorical matrix (quantile-bucketed numerics included)
    categorical: list[tuple[str, str]] = field(default_factory=list)
    #: features whose ``categorical`` column is an ordered bucket index (quantile-bucketed numerics):
    #: tree baselines take those as numbers, every other categorical column as a category
    ordered: list[str] = field(default_factory=list)
    #: feature name per column of the numeric matrix
    numeric: list[str] = field(default_factory=list)
    #: feature names of numeric columns that are missing indicators
    indicators: list[str] = field(default_factory=list)
    #: (feature, table, max_len, pooling)
    sequences: list[tuple[str, str, int, str]] = field(default_factory=list)
    #: table → (size, embedding_dim)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: train quantiles per column of ``numeric`` (indicators excluded), None when not fitted
    numeric_quantiles: list[list[float]] | None = None
    #: regression task → (mean, std) of its train labels (counted rows, sample-weighted)
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: sequence pooled by target attention → (query's column in the categorical matrix,
    #: attention hidden widths, softmax)
    attention: dict[str, tuple[int, tuple[int, ...], bool]] = field(default_factory=dict)
    #: table → train count of each vocabulary entry (row FIRST + i), for tables whose fit stored counts
    table_counts: dict[str, list[int]] = field(default_factory=dict)
