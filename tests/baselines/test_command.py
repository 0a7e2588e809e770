"""``recsys-mtl baseline`` and ``fit --baselines`` end to end on small synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("lightgbm")

from recsys_mtl.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "data.rows=1500", "--set", "trainer.max_epochs=2", "--set", "trainer.batch_size=256", "--set", "trainer.progress_bar=false",
         "--set", "trainer.plots=false",
         "--set", "baselines.lightgbm_params.num_leaves=7", "--set", "baselines.lightgbm_params.num_threads=1",
         "--set", "baselines.rmtgb_params.group_rounds=10"]


def small(tmp_path: Path) -> list[str]:
    return [*SMALL, "--set", f"data.cache_dir={tmp_path / 'cache'}", "--runs-dir", str(tmp_path / "runs")]


@pytest.mark.slow
def test_baseline_command_writes_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", str(ROOT / "pipelines" / "synthetic_mmoe.yaml"), *small(tmp_path), "--seeds", "1", "--rmtgb"]) == 0
    printed = capsys.readouterr().out
    (folder,) = (tmp_path / "runs").glob("synthetic_mmoe-baselines-*")
    report = json.loads((folder / "baselines.json").read_text())
    assert set(report["results"]) == {"multitask", "single_task", "lightgbm", "rmtgb"}
    for method, by_seed in report["results"].items():
        assert set(by_seed) == {"1"}
        for task in ("task0", "task1"):
            # every side beats chance on the same test split
            assert by_seed["1"]["test"][f"{task}/auc"] > 0.6, method
    summary = report["summary"]
    assert set(summary["negative_transfer"]) == {"task0", "task1"}
    assert isinstance(summary["delta_m_test"], float)
    assert report["split_sizes"] == {"train": 1050, "valid": 225, "test": 225}
    assert set(report["rmtgb"]["1"]["sigma"]) == {"task0", "task1"}
    # one single-task run folder per task, each trained on its task alone with the same preprocessing
    singles = sorted((folder / "single_task").iterdir())
    assert len(singles) == 2
    multitask_pre = json.loads(next((folder / "multitask").iterdir()).joinpath("preprocessing.json").read_text())
    for run in singles:
        spec = yaml.safe_load((run / "spec.yaml").read_text())
        assert len(spec["tasks"]) == 1
        assert json.loads((run / "preprocessing.json").read_text())["tables"] == multitask_pre["tables"]
    assert (folder / "baselines.md").read_text().count("| task |") == 1
    assert "Δm" in printed and "LightGBM" in printed and "R-MTGB" in printed


@pytest.mark.slow
def test_fit_with_baselines_compares_that_run(tmp_path: Path) -> None:
    args = ["fit", str(ROOT / "pipelines" / "synthetic_mmoe.yaml"), *small(tmp_path), "--set", "baselines.single_task=false", "--baselines"]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    report = json.loads((run / "baselines" / "baselines.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    seed = str(metrics["seed"])
    assert set(report["results"]) == {"multitask", "lightgbm"}
    assert report["results"]["multitask"][seed]["test"]["task0/auc"] == metrics["test"]["task0/auc"]
    assert "negative_transfer" not in report["summary"]  # no single-task side: no flags


def test_bad_baselines_section_is_one_line_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", str(ROOT / "pipelines" / "synthetic_mmoe.yaml"), *small(tmp_path), "--set", "baselines.seeds=[]", "--baselines"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "baselines.seeds" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_baseline_on_drift_data_records_the_practitioner_choices_and_bias(tmp_path: Path) -> None:
    drift = ["--set", "data.rows=4000", "--set", "data.periods=5", "--set", "data.users=300", "--set", "data.items=300",
             "--set", "baselines.lightgbm_plain=true", "--set", "baselines.single_task=false"]
    args = ["baseline", str(ROOT / "pipelines" / "synthetic_drift_mmoe.yaml"), *small(tmp_path), *drift, "--seeds", "1"]
    assert main(args) == 0
    (folder,) = (tmp_path / "runs").glob("synthetic_drift_mmoe-baselines-*")
    report = json.loads((folder / "baselines.json").read_text())
    assert set(report["results"]) == {"multitask", "lightgbm", "lightgbm_plain", "bias"}
    assert report["lightgbm_high_cardinality"] == ["user_id", "item_id"]
    choice = report["lightgbm_choice"]["1"]
    assert set(choice) == {"click", "convert", "quick"}
    assert all(c["encoding"] in {"rank", "native_smooth", "rank_all"} for c in choice.values())
    assert set(report["bias_choice"]["1"]["click"]) >= {"model", "prior", "entities"}
    table = (folder / "baselines.md").read_text()
    assert "high-cardinality encoding chosen on validation" in table and "bias / item rate" in table
