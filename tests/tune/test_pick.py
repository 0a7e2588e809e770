"""The refit pick, on validation values alone: never a trial the default beats on any objective; the default
itself when no trial beats it on every objective (studies built in memory, no fitting)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, create_trial

from recsys_mtl.tune import open_study, plan_study, summary_table, tune
from recsys_mtl.tune.pick import confirm, gains, pick_over_default
from recsys_mtl.tune.study import ROLE, DEFAULT, choose, pareto_front
from tests.support.tune import write_pipeline

MAX2 = ["maximize", "maximize"]


def _trial(number: int, values: list[float]) -> FrozenTrial:
    t = create_trial(values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
    t.number = number
    return t


def test_a_trial_that_trades_one_task_is_not_picked_and_the_default_is_the_fallback() -> None:
    default = _trial(0, [0.80, 0.70])
    trades = _trial(1, [0.85, 0.69])  # on the front, better on task 0, worse on task 1
    pick = pick_over_default([trades, default], default, MAX2)
    assert pick.trial is default and pick.reason.startswith("default:")


def test_the_pick_maximises_the_smallest_gain_and_honours_min_gain() -> None:
    default = _trial(0, [0.80, 0.70])
    lopsided, even = _trial(1, [0.90, 0.701]), _trial(2, [0.81, 0.71])
    assert pick_over_default([lopsided, even], default, MAX2).trial is even
    assert pick_over_default([lopsided, even], default, MAX2, min_gain=0.005).trial is even
    assert pick_over_default([lopsided, even], default, MAX2, min_gain=0.02).trial is default


def test_minimised_objectives_count_lower_as_better() -> None:
    default = _trial(0, [0.50, 0.80])
    better = _trial(1, [0.45, 0.81])  # lower rmse, higher auc
    assert gains(better, default, ["minimize", "maximize"]) == pytest.approx([0.05, 0.01])
    assert pick_over_default([better], default, ["minimize", "maximize"]).trial is better
    assert pick_over_default([better], default, ["maximize", "maximize"]).trial is default


@pytest.mark.parametrize("seed", range(20))
def test_random_fronts_never_yield_a_trial_the_default_beats_on_any_objective(seed: int) -> None:
    rng = random.Random(seed)
    default = _trial(0, [rng.random() for _ in range(3)])
    front = [_trial(i, [rng.random() for _ in range(3)]) for i in range(1, 8)]
    pick = pick_over_default(front, default, ["maximize"] * 3)
    beaters = [t for t in front if all(v > d for v, d in zip(t.values, default.values))]
    if pick.trial is default:
        assert not beaters
    else:
        assert all(v > d for v, d in zip(pick.trial.values, default.values))
        assert min(gains(pick.trial, default, ["maximize"] * 3)) == max(min(gains(t, default, ["maximize"] * 3)) for t in beaters)


def _study(tmp_path: Path, rows: list[list[float]]) -> tuple[optuna.Study, object]:
    plan = plan_study(write_pipeline(tmp_path, {"space": {"trainer.lr": {"type": "float", "low": 1e-3, "high": 1e-1}},
                                                "objective": {"kind": "multi"}}))
    study = optuna.create_study(directions=plan.directions)
    for i, values in enumerate(rows):
        t = create_trial(values=values, params={"trainer.lr": 0.01}, distributions={"trainer.lr": FloatDistribution(1e-3, 1e-1)},
                         user_attrs={ROLE: DEFAULT} if i == 0 else {})
        study.add_trial(t)
    return study, plan


def test_study_choice_refits_the_default_when_the_front_only_trades_tasks(tmp_path: Path) -> None:
    study, plan = _study(tmp_path, [[0.80, 0.70], [0.85, 0.69], [0.79, 0.75]])
    assert {t.number for t in pareto_front(study, plan)} == {0, 1, 2}
    pick = choose(study, plan)
    assert pick is not None and pick.trial.number == 0


def test_study_choice_takes_a_trial_that_beats_the_default_everywhere(tmp_path: Path) -> None:
    study, plan = _study(tmp_path, [[0.80, 0.70], [0.90, 0.69], [0.81, 0.72], [0.805, 0.71]])
    pick = choose(study, plan)
    assert pick is not None and pick.trial.number == 2 and "gains +0.0100, +0.0200" in pick.reason


def test_confirm_keeps_a_pick_whose_refit_wins_and_falls_back_to_the_default_otherwise() -> None:
    default, tuned = _trial(0, [0.80, 0.70]), _trial(1, [0.82, 0.72])
    pick = pick_over_default([tuned], default, MAX2)
    assert confirm(pick, default, [0.83, 0.75], [0.82, 0.74], MAX2).trial is tuned
    lost = confirm(pick, default, [0.83, 0.73], [0.82, 0.74], MAX2)  # the refits trade task 1 away
    assert lost.trial is default and lost.reason.startswith("default: trial 1 beat trial 0") and "-0.0100" in lost.reason
    assert confirm(pick, default, [0.83, 0.75], [0.82, 0.74], MAX2, min_gain=0.02).trial is default


@pytest.mark.slow
def test_a_pick_whose_refit_loses_to_the_defaults_refit_is_not_the_result(tmp_path: Path) -> None:
    """Trial 1's (proxy) validation value says it wins; refit on the full budget with its lr of 1e-7 it
    cannot: the default's refit is the study's result and the pick's refit is reported as rejected."""
    path = write_pipeline(tmp_path, {
        "n_trials": 2,
        "space": {"trainer.lr": {"type": "categorical", "choices": [0.01, 1.0e-7]}},
        "objective": {"kind": "single", "metric": "val/task0/auc"},
        "plots": "none",
    }, rows=1500)
    plan = plan_study(path)
    study = open_study(plan)  # records the pipeline and enqueues the default (lr 0.01) as trial 0
    study.enqueue_trial({"trainer.lr": 1.0e-7})
    for value in (0.6, 0.99):  # the two trials as a misranking proxy scored them
        trial = study.ask()
        trial.set_user_attr("assignments", {"trainer.lr": trial.suggest_categorical("trainer.lr", [0.01, 1.0e-7])})
        study.tell(trial, value)
    assert [t.params["trainer.lr"] for t in study.trials] == [0.01, 1.0e-7]
    result = tune(plan)
    assert result.chosen is not None and result.chosen.number == 0
    assert result.refit is not None and result.refit.run_dir.name.startswith("tiny-default")
    assert result.rejected_refit is not None and result.rejected_refit.run_dir.name.startswith("tiny-tuned")
    summary = json.loads(result.summary_path.read_text())
    assert summary["chosen_trial"]["reason"].startswith("default: trial 1 beat trial 0")
    assert summary["rejected_refit"]["trial"] == 1 and summary["default_vs_tuned"]["default_is_best"] is True
    assert summary["refit"]["val"]["task0/auc"] > summary["rejected_refit"]["val"]["task0/auc"]
    assert "rejected refit of trial 1" in summary_table(result)
