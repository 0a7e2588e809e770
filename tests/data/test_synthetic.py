"""The synthetic generator: task correlation as specified, feature mix, reproducibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_mtl.data.synthetic import SyntheticConfig, generate, task_weights, write_parquet


@pytest.mark.parametrize("p", [-0.5, 0.0, 0.9])
def test_task_weight_cosine_equals_correlation(p: float) -> None:
    cfg = SyntheticConfig(num_tasks=3, task_correlation=p)
    w = task_weights(cfg, 10, np.random.default_rng(0))
    cos = w @ w.T / np.outer(np.linalg.norm(w, axis=1), np.linalg.norm(w, axis=1))
    assert cos[0, 1] == pytest.approx(p, abs=1e-9) and cos[0, 2] == pytest.approx(p, abs=1e-9)


@pytest.mark.slow
def test_label_correlation_follows_task_correlation() -> None:
    corr = {}
    for p in (-0.8, 0.8):
        df = generate(SyntheticConfig(rows=20_000, task_correlation=p, complexity=0, noise=0.01))
        corr[p] = np.corrcoef(df["y0"].to_numpy(), df["y1"].to_numpy())[0, 1]
    assert corr[-0.8] < -0.5 and corr[0.8] > 0.5


def test_columns_and_types() -> None:
    df = generate(SyntheticConfig(rows=500, num_tasks=3, seed=2))
    assert {"num0", "cat0", "tags", "y2", "label2"} <= set(df.columns)
    assert df.schema["tags"] == pl.List(pl.String)
    assert df["num0"].null_count() > 0
    assert set(df["label0"].unique().to_list()) == {0, 1}
    assert abs(df["label1"].mean() - 0.3) < 0.01  # type: ignore[operator]


def test_reproducible_and_written_as_parquet(tmp_path: Path) -> None:
    cfg = SyntheticConfig(rows=300, seed=9)
    assert generate(cfg).equals(generate(cfg))
    path = write_parquet(cfg, tmp_path / "d" / "s.parquet")
    assert pl.read_parquet(path).equals(generate(cfg))


def test_rejects_bad_correlation() -> None:
    with pytest.raises(ValueError, match="task_correlation"):
        SyntheticConfig(task_correlation=1.5)


def test_shared_sines_make_identical_tasks_at_full_correlation() -> None:
    # α, β are shared by all tasks (as in the MMoE paper): at ρ = 1 only the noise differs
    df = generate(SyntheticConfig(rows=5_000, num_tasks=4, task_correlation=1.0, complexity=10, scale=3.0))
    y = np.stack([df[f"y{k}"].to_numpy() for k in range(4)])
    assert np.abs(y[1:] - y[0]).max() < 1.0  # noise 0.1 each: a difference of 1 is > 7 sigma
    assert np.corrcoef(y).min() > 0.999


def test_target_correlation_follows_task_correlation_with_many_sines() -> None:
    # the low-correlation benchmark's setting (4 tasks, 10 sines, scale 3): orthogonal directions
    # give nearly uncorrelated targets (not exactly: the quantized and tag coordinates are not
    # unit-variance), ρ = 0.9 clearly correlated ones
    mean_abs = {}
    for p in (0.0, 0.9):
        df = generate(SyntheticConfig(rows=20_000, num_tasks=4, task_correlation=p, complexity=10, scale=3.0))
        corr = np.corrcoef(np.stack([df[f"y{k}"].to_numpy() for k in range(4)]))
        mean_abs[p] = np.abs(corr[np.triu_indices(4, 1)]).mean()
    assert mean_abs[0.0] < 0.15 and mean_abs[0.9] > 0.5
