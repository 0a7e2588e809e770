"""The leak-free census spec: the marital-leaking columns are out, and putting one back is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys_mtl.errors import LeakageError
from recsys_mtl.spec import load_pipeline, load_spec
from recsys_mtl.spec.features import FeatureSpec

ROOT = Path(__file__).resolve().parents[2]
LEAKING = ("det_hh_fam_stat", "det_hh_summ", "tax_filer_stat")


def test_noleak_spec_drops_the_leaking_columns_only() -> None:
    full = load_spec(ROOT / "feature_specs" / "census_income.yaml")
    noleak = load_spec(ROOT / "feature_specs" / "census_income_noleak.yaml")
    assert {f.name for f in full.features} - {f.name for f in noleak.features} == set(LEAKING)
    assert [t.label for t in noleak.tasks] == [t.label for t in full.tasks]


def test_putting_a_leaking_column_back_is_a_leakage_error() -> None:
    raw = load_spec(ROOT / "feature_specs" / "census_income_noleak.yaml").model_dump(mode="json", exclude_defaults=True)
    raw["ignore"] = [c for c in raw["ignore"] if c != "tax_filer_stat"]
    raw["features"].append({"name": "tax_filer_stat", "kind": "categorical"})
    with pytest.raises(LeakageError, match="tax_filer_stat"):
        FeatureSpec.model_validate(raw)


def test_noleak_pipeline_loads() -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "census_noleak_mmoe.yaml")
    assert spec.name == "census_income_noleak" and cfg.baselines["rmtgb"] is True
