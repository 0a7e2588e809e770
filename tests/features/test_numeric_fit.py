"""The numeric fit's order statistics against numpy: the median impute, the quantile-bucket
boundaries and the quantiles piecewise-linear embeddings bin on (linear interpolation), over a
column with nulls and NaN (both missing), in memory and streamed from Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.features.fitted import QUANTILE_STEPS
from recsys_mtl.spec import FeatureSpec


def _spec() -> FeatureSpec:
    return FeatureSpec.model_validate({
        "name": "t",
        "tasks": [{"name": "y", "label": "y"}],
        "features": [
            {"name": "m", "kind": "numeric", "missing": {"impute": "median"}},
            {"name": "b", "kind": "numeric", "quantile_buckets": 5, "embedding_dim": 2},
        ],
    })


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 1001  # odd: the median is one value; even counts are covered by the missing rows below
    m = rng.lognormal(size=n)
    m[rng.random(n) < 0.1] = np.nan
    b = np.round(rng.normal(size=n), 2)  # ties
    return pl.DataFrame({"m": m, "b": b, "y": rng.integers(0, 2, n)}).with_columns(
        m=pl.when(pl.int_range(pl.len()) % 13 == 0).then(None).otherwise(pl.col("m")))


@pytest.mark.parametrize("streamed", [False, True])
def test_median_buckets_and_quantiles_equal_numpys(frame: pl.DataFrame, streamed: bool, tmp_path: Path) -> None:
    if streamed:
        frame[:400].write_parquet(tmp_path / "a.parquet")
        frame[400:].write_parquet(tmp_path / "b.parquet")
        pre = Preprocessor.fit_files(_spec(), [tmp_path / "a.parquet", tmp_path / "b.parquet"])
    else:
        pre = Preprocessor.fit(_spec(), frame)
    m = frame["m"].fill_nan(None).drop_nulls().to_numpy()
    fitted_m = pre.fitted.numeric["m"]
    assert fitted_m.impute_value == pytest.approx(float(np.median(m)), rel=1e-12)
    imputed = frame["m"].fill_nan(None).fill_null(fitted_m.impute_value).to_numpy()
    standardized = (imputed - imputed.mean()) / imputed.std()
    np.testing.assert_allclose(fitted_m.quantiles, np.quantile(standardized, np.linspace(0, 1, QUANTILE_STEPS + 1)),
                               rtol=1e-9, atol=1e-12)

    b = frame["b"].to_numpy()
    expected = sorted(set(np.quantile(b, np.linspace(0, 1, 6)[1:-1]).tolist()))
    np.testing.assert_allclose(pre.fitted.numeric["b"].boundaries, expected, rtol=1e-12)
