"""Studies on tiny synthetic data: pruning prunes, objectives are what they say, trials never see test."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from optuna.trial import TrialState

from recsys_mtl.cli import main
from recsys_mtl.tune import plan_study, summary_table, tune
from tests.support.tune import write_pipeline

LR = {"trainer.lr": {"type": "categorical", "choices": [0.02, 1.0e-7]}}


@pytest.mark.slow
def test_pruner_prunes_a_bad_trial_and_the_refit_alone_sees_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_pipeline(tmp_path, {
        "n_trials": 2,
        "space": LR,
        "objective": {"kind": "single", "metric": "val/task0/auc"},
        # one finished trial is enough to compare against; lr=1e-7 stays at its initial AUC
        "pruner": {"name": "median", "params": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        "enqueue": [{"trainer.lr": 0.02}, {"trainer.lr": 1.0e-7}],
        "enqueue_default": False,
        "trial_overrides": {"trainer.max_epochs": 3},
    }, rows=2000)
    result = tune(plan_study(path))
    good, bad = result.study.trials
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert bad.last_step is not None and bad.last_step < 2  # stopped before its last epoch
    assert good.value == pytest.approx(good.user_attrs["val"]["task0/auc"])
    # enqueue_default: false: no untuned default trial, and no default-vs-tuned report
    assert all("role" not in t.user_attrs for t in (good, bad))

    # trials: run folders without test metrics, and the test split never reached their trainers
    for t in (good, bad):
        run = Path(t.user_attrs.get("run_dir") or next((tmp_path / "runs/tune/tiny/trials").glob(f"trial{t.number:04d}-*")))
        logs = pl.read_csv(run / "logs" / "metrics.csv")
        assert not [c for c in logs.columns if c.startswith("test/")]
    assert "test" not in json.loads((Path(good.user_attrs["run_dir"]) / "metrics.json").read_text())

    # the chosen trial refit into a normal run folder (ready for export), tested once
    assert result.chosen is not None and result.chosen.number == good.number and result.refit is not None
    refit = result.refit.run_dir
    for name in ("pipeline.yaml", "spec.yaml", "preprocessing.json", "checkpoints/best.ckpt", "metrics.json"):
        assert (refit / name).exists(), name
    assert result.refit.metrics["test"]["task0/auc"] > 0.6
    assert "lr: 0.02" in (refit / "pipeline.yaml").read_text()

    area = tmp_path / "runs" / "tune" / "tiny"
    assert {p.name for p in result.plots} >= {"history.html", "importances.html", "intermediate_values.html"}
    assert (area / "plots" / "plotly.min.js").exists()  # the pages open offline
    summary = json.loads((area / "summary.json").read_text())
    assert summary["states"]["PRUNED"] == 1 and summary["refit"]["test"] is not None
    assert summary["default_vs_tuned"] is None
    table = summary_table(result)
    assert "COMPLETE=1  PRUNED=1" in table and "refit of trial 0" in table
    assert (area / "trials.csv").read_text().count("\n") == 3  # header + 2 trials


@pytest.mark.slow
def test_multi_objective_study_reports_a_pareto_front_with_png_plots(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, {
        "n_trials": 2,
        "space": {"trainer.lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
                  "model.params.num_experts": {"type": "int", "low": 1, "high": 3}},
        "objective": {"kind": "multi"},
        "sampler": {"name": "random", "params": {"seed": 1}},
        "trial_overrides": {"trainer.max_epochs": 1},
        "plots": "png",
    })
    result = tune(plan_study(path), do_refit=False)
    done = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.values == [pytest.approx(t.user_attrs["val"]["task0/auc"]), pytest.approx(t.user_attrs["val"]["task1/auc"])]
    front = json.loads(result.summary_path.read_text())["pareto_front"]
    numbers = {t.number for t in result.study.best_trials}
    assert front and {f["number"] for f in front} == numbers
    assert {p.name for p in result.plots} >= {"pareto_front.png", "history_task0_auc.png", "history_task1_auc.png"}
    assert result.refit is None


@pytest.mark.slow
def test_weighted_objective_is_the_weighted_sum_of_val_metrics(tmp_path: Path) -> None:
    weights = {"val/task0/auc": 0.25, "val/task1/auc": 0.75}
    path = write_pipeline(tmp_path, {
        "n_trials": 1,
        "space": {"trainer.lr": {"type": "float", "low": 1.0e-2, "high": 2.0e-2}},
        "objective": {"kind": "weighted", "weights": weights},
        "trial_overrides": {"trainer.max_epochs": 1},
        "plots": "none",
    })
    result = tune(plan_study(path), do_refit=False)
    (trial,) = result.study.trials
    val = trial.user_attrs["val"]
    assert trial.value == pytest.approx(0.25 * val["task0/auc"] + 0.75 * val["task1/auc"], abs=1e-5)
    assert result.plots == []


def test_cli_reports_a_bad_space_in_one_line_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_pipeline(tmp_path, {"space": {"trainer.lr": {"type": "float", "low": 0.1, "high": 0.01}}})
    assert main(["tune", str(path), "--trials", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: tune.space.trainer.lr: low (0.1) > high (0.01)"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_enqueued_default_is_trial_zero_and_never_beaten_by_the_reported_best(tmp_path: Path) -> None:
    """The untuned pipeline (lr 0.01, between the searched values) runs first, exactly as written;
    the chosen trial is never worse on validation; the summary shows both on val and on test."""
    path = write_pipeline(tmp_path, {
        "n_trials": 3,
        "space": {"trainer.lr": {"type": "categorical", "choices": [1.0e-7, 0.01, 0.5]},
                  "model.params.num_experts": {"type": "int", "low": 1, "high": 4}},
        "objective": {"kind": "single", "metric": "val/task0/auc"},
        "sampler": {"name": "random", "params": {"seed": 0}},
        # ASHA over epochs: a trial is stopped at a rung where it is not in the top half
        "pruner": {"name": "successive_halving", "params": {"min_resource": 1, "reduction_factor": 2}},
        "enqueue": [{"trainer.lr": 1.0e-7}],
    }, rows=1500)
    result = tune(plan_study(path))
    trials = result.study.trials
    default = trials[0]
    assert default.user_attrs["role"] == "default" and default.state == TrialState.COMPLETE
    assert default.params == {"trainer.lr": "0.01", "model.params.num_experts": 2} or default.params == {"trainer.lr": 0.01, "model.params.num_experts": 2}
    assert trials[1].params["trainer.lr"] in (1.0e-7, "1e-07")  # the user's enqueued trial comes next
    best = result.study.best_trial
    assert best.value >= default.value
    report = json.loads(result.summary_path.read_text())["default_vs_tuned"]
    assert report["default"]["trial"] == 0 and report["tuned"]["trial"] == best.number
    assert report["tuned"]["val"]["task0/auc"] >= report["default"]["val"]["task0/auc"]
    assert report["default"]["test"] is not None and report["tuned"]["test"] is not None
    assert "default vs tuned" in summary_table(result)
