"""``recsys-mtl evaluate``: on a run's test split it reproduces metrics.json's test figures (one
metric definition); slices, calibration and drift against the export's training statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_mtl.cli import main
from recsys_mtl.data.sources import data_source
from recsys_mtl.errors import DataError
from recsys_mtl.evaluate import evaluate
from recsys_mtl.evaluate.drift import psi, quantile_bins, shares
from recsys_mtl.export import export_run
from recsys_mtl.spec import FeatureSpec, load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run folder, its export, its test split as Parquet) of a small synthetic fit whose task0 is
    also scored by GAUC over ``cat1``."""
    root = tmp_path_factory.mktemp("evaluate")
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=4000", f"data.cache_dir={root / 'cache'}", "trainer.max_epochs=2", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={root / 'runs'}"])
    raw = spec.model_dump(mode="json", exclude_defaults=True)
    raw["tasks"][0]["group_by"] = "cat1"
    spec = FeatureSpec.model_validate(raw)
    run = fit(cfg, spec).run_dir
    export = export_run(run, root / "export").out_dir
    test = root / "test.parquet"
    data_source(cfg.data).test().write_parquet(test, row_group_size=150)
    return run, export, test


@pytest.mark.slow
def test_evaluate_on_the_test_split_equals_metrics_json(fitted_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, export, test = fitted_export
    assert (export / "spec.yaml").is_file() and (export / "preprocessing.json").is_file()
    report = evaluate(export, [str(test)], tmp_path / "ev").report
    want = json.loads((run / "metrics.json").read_text())["test"]
    got = report["metrics"]
    for key in ("task0/auc", "task0/gauc", "task0/logloss", "task1/auc", "task1/logloss", "auc_mean", "gauc_mean"):
        assert key in got and key in want, key
        assert abs(got[key] - want[key]) <= 1e-4, (key, got[key], want[key])
    # the calibration figures are the run's own (calibration.json, same reliability code)
    cal = json.loads((run / "calibration.json").read_text())["raw"]["test"]
    for task in ("task0", "task1"):
        assert abs(report["calibration"][task]["ece"] - cal[task]["ece"]) <= 1e-4
        assert report["calibration"][task]["rows"] == cal[task]["rows"]
    for name in ("evaluate.json", "evaluate.md", "reliability.png", "drift.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    # on rows drawn like the training rows, no input drifts
    assert all(d["psi"] < 0.1 for d in report["drift"].values() if d.get("psi") is not None)
    assert all(d["oov_share"] < 0.05 for d in report["drift"].values() if d.get("oov_share") is not None)


def test_slices(fitted_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, export, test = fitted_export
    df = pl.read_parquet(test).with_columns(everyone=pl.lit("all"))
    df.write_parquet(tmp_path / "t.parquet")
    one = evaluate(export, [str(tmp_path / "t.parquet")], tmp_path / "one", by="everyone").report
    assert [s["value"] for s in one["slices"]] == ["all"]
    assert one["slices"][0]["metrics"] == one["metrics"]  # a slice of every row is the whole
    many = evaluate(export, [str(tmp_path / "t.parquet")], tmp_path / "many", by="cat2", max_slices=3).report
    assert sum(s["rows"] for s in many["slices"]) == many["rows"]
    assert many["slices"][-1]["value"] == "other" and len(many["slices"]) == 4
    assert "## By `cat2`" in (tmp_path / "many" / "evaluate.md").read_text()


def test_drift_names_the_shifted_inputs(fitted_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, export, test = fitted_export
    df = pl.read_parquet(test)
    shifted = df.with_columns(num0=pl.col("num0") * 3 + 5, cat0=pl.lit("never-seen-") + pl.col("cat0"))
    shifted.write_parquet(tmp_path / "shifted.parquet")
    assert main(["evaluate", str(export), str(tmp_path / "shifted.parquet"), "--out", str(tmp_path / "ev")]) == 0
    drift = json.loads((tmp_path / "ev" / "evaluate.json").read_text())["drift"]
    assert drift["num0"]["psi"] > 1.0 and drift["num1"]["psi"] < 0.1
    assert drift["cat0"]["oov_share"] == 1.0 and drift["cat1"]["oov_share"] < 0.05
    assert "| num0 | numeric |" in (tmp_path / "ev" / "evaluate.md").read_text()


def test_missing_label_column_is_named(fitted_export: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, export, test = fitted_export
    pl.read_parquet(test).drop("label1").write_parquet(tmp_path / "nolabel.parquet")
    with pytest.raises(DataError, match=r"nolabel.parquet: column 'label1' is missing"):
        evaluate(export, [str(tmp_path / "nolabel.parquet")], tmp_path / "ev")


def test_an_unwritable_out_is_refused_before_any_row_is_read(fitted_export: tuple[Path, Path, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, export, test = fitted_export
    (tmp_path / "afile").write_text("x")

    def no_rows(*args: object) -> None:
        raise AssertionError("the output folder is checked before the rows are read and scored")

    monkeypatch.setattr("recsys_mtl.evaluate.report.read_rows", no_rows)
    with pytest.raises(DataError, match=r"afile/ev: cannot be created: .*afile is a file, not a folder; choose another --out"):
        evaluate(export, [str(test)], tmp_path / "afile" / "ev")
    with pytest.raises(DataError, match=r"afile: is a file"):
        evaluate(export, [str(test)], tmp_path / "afile")


def test_psi_bins_from_training_quantiles() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=200_000)
    edges, expected = quantile_bins(list(np.quantile(train, np.linspace(0, 1, 65))))
    assert len(edges) == 15 and np.allclose(expected, 1 / 16)
    assert psi(expected, shares(rng.normal(size=50_000), edges)) < 0.01
    assert psi(expected, shares(rng.normal(0.5, 1, size=50_000), edges)) > 0.2
    # a point mass (30% zeros) ties quantiles: its bin carries their whole share, so the same data is stable
    zeros = np.where(rng.random(200_000) < 0.3, 0.0, rng.exponential(size=200_000))
    edges, expected = quantile_bins(list(np.quantile(zeros, np.linspace(0, 1, 65))))
    assert edges[0] == 0.0 and abs(expected[0] - 0.3) < 1 / 64
    assert psi(expected, shares(np.where(rng.random(50_000) < 0.3, 0.0, rng.exponential(size=50_000)), edges)) < 0.02
