"""Values checked at the type where they are used (serving.limits): the usable range of a numeric
input is the exact inverse of its float32 overflow, training and the server refuse the same values
naming column / field and row, and the repeated ``tasks`` query parameter is refused."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from recsys_mtl.features.fitted import FittedNumeric
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.features.value_limits import check_label, fitted_range
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.spec import load_pipeline
from serving.app import ServeSettings, create_app
from serving.limits import FLOAT32_LIMIT, NumericRange, first_int64_overflow, limits_from_json, numeric_range
from serving.predictor import Predictor
from tests.support.synthetic import synthetic_spec
from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
F32_MAX = float(np.finfo(np.float32).max)


def _fitted(**kw: object) -> FittedNumeric:
    base = dict(name="x", source="x", impute_value=0.0, indicator=False, clip_min=None, clip_max=None, log1p=False,
                mean=2.0, std=1e-3)
    return FittedNumeric(**{**base, **kw})  # type: ignore[arg-type]


def _to_float32(fitted: FittedNumeric, x: float) -> float:
    values, _ = fitted.transform(pl.Series([x]))
    with np.errstate(over="ignore"):
        return float(values.astype(np.float32)[0])


@pytest.mark.parametrize("kw", [{}, {"mean": -5e30, "std": 7e3}, {"clip_min": -1.0}, {"clip_max": 4.0}])
def test_usable_range_is_the_inverse_of_the_float32_overflow(kw: dict[str, float]) -> None:
    fitted = _fitted(**kw)
    r = fitted_range(fitted)
    for edge, step in ((r.lo, -1), (r.hi, 1)):
        if math.isinf(edge):  # a clip inside the range: every value on that side is usable
            assert math.isfinite(_to_float32(fitted, math.copysign(1e300, edge)))
            continue
        assert math.isfinite(_to_float32(fitted, edge))
        beyond = edge + step * abs(edge) * 1e-5 + step * fitted.std * F32_MAX * 1e-5
        assert math.isinf(_to_float32(fitted, beyond)) and r.first_outside(np.array([0.0, beyond])) == 1


def test_log1p_and_buckets_take_any_finite_value() -> None:
    assert not fitted_range(_fitted(log1p=True)).bounded
    assert not fitted_range(_fitted(boundaries=[0.0, 1.0])).bounded
    assert numeric_range(mean=0.0, std=1.0, clip_min=None, clip_max=None, log1p=False, bucketed=False) == \
        NumericRange(-FLOAT32_LIMIT, FLOAT32_LIMIT)


def test_limits_json_round_trip_and_refusal() -> None:
    assert limits_from_json({"a": [None, 3.0]}) == {"a": NumericRange(-math.inf, 3.0)}
    for bad in ({"a": [1]}, {"a": [2.0, 1.0]}, {"a": ["x", 1]}, [1, 2]):
        with pytest.raises(ValueError):
            limits_from_json(bad)


def test_fit_refuses_a_value_float64_holds_and_float32_does_not() -> None:
    df = generate(SyntheticConfig(rows=200, num_tasks=2, seed=0))
    bad = df.with_columns(num0=pl.when(pl.int_range(pl.len()) == 7).then(1e300).otherwise(pl.col("num0")))
    with pytest.raises(DataError, match=r"train: column 'num0' .* 1 value\(s\) beyond float32's range .* row 7 \(1e\+300\)"):
        Preprocessor.fit(synthetic_spec(2), bad)
    # clipped (num3) or bucketed (num5), the same value is usable
    pre = Preprocessor.fit(synthetic_spec(2), df.with_columns(num3=pl.lit(1e300), num5=pl.lit(-1e300)))
    assert pre.numeric["num3"].clip_max == 3


def test_transform_names_column_and_row_of_an_overflowing_value() -> None:
    df = generate(SyntheticConfig(rows=200, num_tasks=2, seed=0)).with_columns(num1=pl.col("num1") * 1e-3)
    pre = Preprocessor.fit(synthetic_spec(2), df)
    # within float32 as a raw number, beyond it once standardized with a small train deviation
    test = df.with_columns(num1=pl.when(pl.int_range(pl.len()) == 4).then(1e36).otherwise(pl.col("num1")))
    with pytest.raises(DataError, match=r"test split: column 'num1' .* row 4: value .* outside the range this model can use"):
        pre.transform(test, "test split")


def test_validate_data_and_a_tampered_preprocessing_file_are_checked_too(tmp_path: Path) -> None:
    from recsys_mtl.data.preprocess import check_frame
    from recsys_mtl.features.value_limits import check_fitted_state

    df = generate(SyntheticConfig(rows=50, num_tasks=2, seed=0)).with_columns(num2=pl.lit("-1e39"))
    with pytest.raises(DataError, match=r"valid split: column 'num2' .* 50 value\(s\) beyond float32's range .*, first at row 0"):
        check_frame(synthetic_spec(2), df, "valid split")
    pre = Preprocessor.fit(synthetic_spec(2), generate(SyntheticConfig(rows=200, num_tasks=2, seed=0)))
    pre.numeric["num0"].mean = 1e300
    with pytest.raises(DataError, match=r"p.json: numeric.num0.mean: 1e\+300 is beyond float32's range"):
        check_fitted_state(pre.numeric, {}, "p.json")


def test_label_beyond_float32_is_refused() -> None:
    with pytest.raises(DataError, match=r"task 'y': label 'v' at row 1 is 1e\+300"):
        check_label(np.array([1.0, 1e300]), np.array([True, True]), "y", "v", "train")
    check_label(np.array([1.0, 1e300]), np.array([True, False]), "y", "v", "train")  # a null label is not used


def test_integers_beyond_int64_in_a_pipeline_name_the_field() -> None:
    assert first_int64_overflow({"a": [1, {"b": 2**63}]}) == ("a[1].b", f"{2**63} is beyond the int64 range [-2**63, 2**63 - 1]")
    assert first_int64_overflow({"a": -(2**63), "b": True, "c": 1e300}) is None
    with pytest.raises(SpecError, match=r"trainer.batch_size: 100000000000000000000 is beyond the int64 range"):
        load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", ["trainer.batch_size=100000000000000000000"])


@pytest.fixture(scope="module")
def client(export_dir: Path) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(Predictor(export_dir), ServeSettings(max_request_rows=50))) as c:
        yield c


def test_export_records_limits_and_the_server_refuses_values_outside(client: TestClient, export_dir: Path) -> None:  # noqa: F811
    limits = client.get("/metadata").json()["limits"]
    assert set(limits) == {"num0", "num1", "num2", "num4"}  # num3 is clipped, num5 bucketed: any finite value
    lo, hi = limits["num0"]
    rows = [good_row(i) for i in range(3)]
    rows[2]["num0"] = hi * 1.001 + 1e30
    r = client.post("/predict", json=rows)
    assert r.status_code == 422 and r.json()["field"] == "num0" and r.json()["code"] == "out_of_range"
    assert r.json()["error"].startswith("row 2: field 'num0'")
    rows[2]["num0"] = 1e300  # was HTTP 200 with NaN scores
    assert client.post("/predict", json=rows).status_code == 422
    rows[2]["num0"], rows[2]["num3"], rows[2]["num5"] = hi * 0.5, 1e300, -1e300
    ok = client.post("/predict", json=rows)
    assert ok.status_code == 200 and all(math.isfinite(v) for v in ok.json()["outputs"]["task0"])


def test_repeated_tasks_parameter_is_refused(client: TestClient) -> None:
    rows = [good_row(0)]
    r = client.post("/predict?tasks=task0&tasks=task1", json=rows)
    assert r.status_code == 422 and r.json()["field"] == "tasks" and r.json()["code"] == "repeated_parameter"
    assert "given 2 times" in r.json()["error"]
    assert client.post("/predict?tasks=task0,task1", json=rows).status_code == 200
