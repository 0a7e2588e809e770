"""Synthetic multitask tabular data with a controlled task correlation.

The recipe extends the MMoE paper (Ma et al., KDD 2018, §3.2) and MultiTab-Bench:

1. Orthonormal ``u_0 .. u_T`` in R^d; task 0 gets ``w_0 = c·u_0`` and task k ≥ 1 gets
   ``w_k = c·(ρ·u_0 + sqrt(1-ρ²)·u_k)``, so cos(w_0, w_k) = ρ (and ρ² between tasks k, j ≥ 1).
2. Latent ``x ~ N(0, I_d)``; ``y_k = w_k·x + Σ_i sin(α_i·w_k·x + β_i) + ε_k``; ``complexity`` sets
   the number of sine terms (task non-linearity). As in the paper, the sine parameters
   ``α_i, β_i`` are drawn once and shared by all tasks: every task is the same non-linear
   function of its own projection, so the task correlation ρ alone sets how related tasks are
   (at ρ = 1 the targets differ only by noise). Per-task sine parameters were considered and
   left out: they would make tasks differ even at ρ = 1 and blur that single control. Low
   correlation is made hard for a shared bottom with more tasks (each adds an orthogonal
   direction at ρ = 0) and a larger ``complexity`` / ``scale`` (more wiggles per direction).
3. The latent coordinates are exposed through a feature mix: some as numeric columns (with
   missing values), some quantized into shuffled categorical tokens (the model must learn the
   order), and one coordinate carried by a multi-hot list of tags.
4. Each task has a continuous target ``y{k}`` and a binary label ``label{k}`` (top
   ``positive_rate`` share of ``y{k}``).

Planted task clusters (``task_groups`` G > 1): tasks are dealt round-robin into G groups; each
group has a direction ``v_g`` (``v_0 = u_0``, ``v_g = ρ_x·u_0 + sqrt(1-ρ_x²)·u'_g`` with
ρ_x = ``group_correlation``) and task k in group g gets ``w_k = c·(ρ·v_g + sqrt(1-ρ²)·u_k)``:
cos = ρ² within a group, ρ²·ρ_x between group 0 and another (ρ²·ρ_x² between two others).
With G = 2 and ρ_x < 0: tasks correlate positively within and negatively across the clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys_mtl.data.readers import write_parquet_atomic


@dataclass(frozen=True)
class SyntheticConfig:
    rows: int = 20_000
    num_tasks: int = 2
    task_correlation: float = 0.5
    num_numeric: int = 6
    num_categorical: int = 6
    categories: int = 12
    tag_vocab: int = 40
    max_tags: int = 6
    complexity: int = 5
    scale: float = 1.0
    missing_rate: float = 0.03
    positive_rate: float = 0.3
    noise: float = 0.1
    seed: int = 0
    #: planted clusters of tasks (1 = none); see the module docstring
    task_groups: int = 1
    group_correlation: float = -0.8

    def __post_init__(self) -> None:
        if not -1.0 <= self.task_correlation <= 1.0:
            raise ValueError(f"task_correlation must be in [-1, 1], got {self.task_correlation}")
        if not -1.0 <= self.group_correlation <= 1.0:
            raise ValueError(f"group_correlation must be in [-1, 1], got {self.group_correlation}")
        if not 1 <= self.task_groups <= self.num_tasks:
            raise ValueError(f"task_groups must be in [1, num_tasks], got {self.task_groups}")
        if self.rows < 1 or self.num_tasks < 1:
            raise ValueError("rows and num_tasks must be positive")


def task_group(cfg: SyntheticConfig, k: int) -> int:
    """The planted group of task ``k`` (round-robin)."""
    return k % cfg.task_groups


def _grouped_weights(cfg: SyntheticConfig, dim: int, rng: np.random.Generator) -> np.ndarray:
    G, T = cfg.task_groups, cfg.num_tasks
    if dim < T + G:
        raise ValueError(f"need at least {T + G} latent dimensions for {T} tasks in {G} groups, got {dim}")
    basis, _ = np.linalg.qr(rng.standard_normal((dim, T + G)))
    u = basis.T  # rows 0..G-1: group axes, G..: task axes
    px, p = cfg.group_correlation, cfg.task_correlation
    v = [u[0]] + [px * u[0] + np.sqrt(1.0 - px * px) * u[g] for g in range(1, G)]
    w = [p * v[task_group(cfg, k)] + np.sqrt(1.0 - p * p) * u[G + k] for k in range(T)]
    return cfg.scale * np.stack(w)


def task_weights(cfg: SyntheticConfig, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(T, d) task weight vectors with cos(w_0, w_k) = task_correlation (planted groups: see above)."""
    if cfg.task_groups > 1:
        return _grouped_weights(cfg, dim, rng)
    if dim < cfg.num_tasks + 1:
        raise ValueError(f"need at least {cfg.num_tasks + 1} latent dimensions, got {dim}")
    basis, _ = np.linalg.qr(rng.standard_normal((dim, cfg.num_tasks + 1)))
    u = basis.T  # orthonormal rows
    p = cfg.task_correlation
    w = [u[0]] + [p * u[0] + np.sqrt(1.0 - p * p) * u[k] for k in range(1, cfg.num_tasks)]
    return cfg.scale * np.stack(w)


def generate(cfg: SyntheticConfig) -> pl.DataFrame:
    rng = np.random.default_rng(cfg.seed)
    n = cfg.rows
    dim = cfg.num_numeric + cfg.num_categorical + 1  # +1: the coordinate carried by the tags
    x = rng.standard_normal((n, dim))

    columns: dict[str, object] = {}
    for j in range(cfg.num_numeric):
        col = x[:, j].copy()
        col[rng.random(n) < cfg.missing_rate] = np.nan
        columns[f"num{j}"] = col
    edges = np.quantile(rng.standard_normal(100_000), np.linspace(0, 1, cfg.categories + 1)[1:-1])
    for j in range(cfg.num_categorical):
        k = cfg.num_numeric + j
        bucket = np.searchsorted(edges, x[:, k])
        labels = rng.permutation(cfg.categories)
        # the latent value becomes the bucket centre the model can recover from the token
        centres = np.array([x[bucket == b, k].mean() if (bucket == b).any() else 0.0 for b in range(cfg.categories)])
        x[:, k] = centres[bucket]
        columns[f"cat{j}"] = np.char.add(f"c{j}_", labels[bucket].astype(str))

    tag_effect = rng.standard_normal(cfg.tag_vocab)
    n_tags = rng.integers(0, cfg.max_tags + 1, size=n)
    tags = [rng.choice(cfg.tag_vocab, size=t, replace=False) for t in n_tags]
    x[:, -1] = np.array([tag_effect[t].sum() / np.sqrt(max(len(t), 1)) for t in tags])
    columns["tags"] = [[f"t{v}" for v in t] for t in tags]

    w = task_weights(cfg, dim, rng)
    alpha = rng.normal(size=cfg.complexity)
    beta = rng.normal(size=cfg.complexity)
    for k in range(cfg.num_tasks):
        z = x @ w[k]
        y = z + np.sin(np.outer(z, alpha) + beta).sum(axis=1) + rng.normal(0, cfg.noise, size=n)
        columns[f"y{k}"] = y
        columns[f"label{k}"] = (y > np.quantile(y, 1.0 - cfg.positive_rate)).astype(np.int8)

    df = pl.DataFrame(columns)
    return df.with_columns(pl.col([f"num{j}" for j in range(cfg.num_numeric)]).fill_nan(None))


def write_parquet(cfg: SyntheticConfig, path: Path) -> Path:
    write_parquet_atomic(generate(cfg), path, "the synthetic data cache")  # DDP / Ray workers started together write the same cache
    return path
