"""The tune section: typed parameters, conditions, objectives, and every bad input failing before a trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from recsys_mtl.errors import SpecError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.tune.objectives import MultiObjective
from recsys_mtl.tune.params import CategoricalParam, FloatParam, IntParam
from recsys_mtl.tune.paths import resolve, sample
from recsys_mtl.tune.space import parse_tune
from recsys_mtl.tune.study import plan_study
from tests.support.tune import write_pipeline

SPACE: dict[str, Any] = {
    "trainer.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "trainer.batch_size": {"type": "categorical", "choices": [64, 128]},
    "model.name": {"type": "categorical", "choices": ["mmoe", "ple"]},
    "model.params.num_experts": {"type": "int", "low": 2, "high": 8, "step": 2, "when": {"model.name": "mmoe"}},
    "model.params.shared_experts": {"type": "int", "low": 1, "high": 3, "when": {"model.name": "ple"}},
    "model.params.expert_hidden": {"type": "categorical", "choices": [[16], [32, 16]]},
    "balancing.name": {"type": "categorical", "choices": ["equal", "uncertainty"]},
}


def plan(tmp_path: Path, **tune: Any):  # type: ignore[no-untyped-def]
    return plan_study(write_pipeline(tmp_path, {"space": SPACE, **tune}))


def test_space_parses_typed_parameters_and_defaults(tmp_path: Path) -> None:
    p = plan(tmp_path)
    space = p.tune.space
    assert isinstance(space["trainer.lr"], FloatParam) and space["trainer.lr"].log
    assert isinstance(space["model.params.num_experts"], IntParam) and space["model.params.num_experts"].step == 2
    assert isinstance(space["model.params.expert_hidden"], CategoricalParam)
    assert p.metrics == ["val/auc_mean"] and p.directions == ["maximize"]  # default: the trainer's monitor
    assert p.storage_url == f"sqlite:///{tmp_path / 'runs' / 'tune' / 'tiny' / 'study.db'}"
    assert isinstance(p.tune.make_pruner(), optuna.pruners.MedianPruner)


def test_multi_objective_defaults_to_every_task_metric(tmp_path: Path) -> None:
    p = plan(tmp_path, objective={"kind": "multi"})
    assert isinstance(p.tune.objective, MultiObjective)
    assert p.metrics == ["val/task0/auc", "val/task1/auc"] and p.directions == ["maximize", "maximize"]
    assert isinstance(p.tune.make_pruner(), optuna.pruners.NopPruner)
    w = plan(tmp_path, objective={"kind": "weighted", "weights": {"val/task0/auc": 0.7, "val/task1/logloss": -0.3}})
    assert w.metrics == ["val/task0/auc", "val/task1/logloss"] and w.directions == ["maximize"]
    s = plan(tmp_path, objective={"kind": "single", "metric": "val/task1/logloss"})
    assert s.directions == ["minimize"]


def test_conditional_parameters_follow_the_sampled_family(tmp_path: Path) -> None:
    p = plan(tmp_path)
    base = p.cfg.model_dump(mode="python")
    fixed = {"trainer.lr": 0.01, "trainer.batch_size": 64, "model.params.num_experts": 4, "model.params.shared_experts": 2,
             "model.params.expert_hidden": "[32, 16]", "balancing.name": "equal"}
    mmoe = sample(p.tune.space, optuna.trial.FixedTrial({**fixed, "model.name": "mmoe"}), base)
    assert "model.params.num_experts" in mmoe and "model.params.shared_experts" not in mmoe
    assert mmoe["model.params.expert_hidden"] == [32, 16]  # list choices round-trip through Optuna
    ple = sample(p.tune.space, optuna.trial.FixedTrial({**fixed, "model.name": "ple"}), base)
    assert "model.params.shared_experts" in ple and "model.params.num_experts" not in ple
    cfg = resolve(p.cfg, ple)
    # the pipeline's MMoE-only num_experts is left out when the family is PLE
    assert cfg.model.name == "ple" and "num_experts" not in cfg.model.params and cfg.model.params["shared_experts"] == 2


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("low>high", {"space": {"trainer.lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "tune.space.trainer.lr: low (0.1) > high (0.01)"),
    ("int low>high", {"space": {"model.params.num_experts": {"type": "int", "low": 9, "high": 2}}}, "tune.space.model.params.num_experts: low (9) > high (2)"),
    ("empty choices", {"space": {"trainer.batch_size": {"type": "categorical", "choices": []}}}, "tune.space.trainer.batch_size.choices"),
    ("duplicate choices", {"space": {"trainer.batch_size": {"type": "categorical", "choices": [64, 64]}}}, "choices must be distinct"),
    ("log with 0", {"space": {"trainer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, "log scale needs low > 0"),
    ("unknown type", {"space": {"trainer.lr": {"type": "uniform", "low": 0.0, "high": 0.1}}}, "tune.space.trainer.lr"),
    ("unknown key", {"space": {"trainer.lr": {"type": "float", "low": 0.01, "high": 0.1, "scale": "log"}}}, "tune.space.trainer.lr.scale: unknown key"),
    ("empty space", {"space": {}}, "tune.space"),
    ("unknown trainer path", {"space": {"trainer.learning_rate": {"type": "float", "low": 0.01, "high": 0.1}}}, "tune.space.trainer.learning_rate"),
    ("unknown model param", {"space": {"model.params.num_expertz": {"type": "int", "low": 2, "high": 4}}}, "tune.space.model.params.num_expertz"),
    ("param of another family", {"space": {"model.name": {"type": "categorical", "choices": ["mmoe", "ple"]},
                                            "model.params.num_experts": {"type": "int", "low": 2, "high": 4}}}, "model.name=ple"),
    ("unknown model", {"space": {"model.name": {"type": "categorical", "choices": ["mmoe", "nope"]}}}, "tune.space.model.name: value 'nope'"),
    ("not tunable", {"space": {"data.rows": {"type": "int", "low": 100, "high": 200}}}, "tune.space.data.rows: not tunable"),
    ("value out of range", {"space": {"trainer.batch_size": {"type": "int", "low": 0, "high": 64}}}, "tune.space.trainer.batch_size: value 0"),
    ("when unknown", {"space": {"trainer.lr": {"type": "float", "low": 0.01, "high": 0.1, "when": {"model.nam": "mmoe"}}}}, "when: unknown path 'model.nam'"),
    ("when later", {"space": {"model.params.num_experts": {"type": "int", "low": 2, "high": 4, "when": {"model.name": "mmoe"}},
                              "model.name": {"type": "categorical", "choices": ["mmoe", "omoe"]}}}, "is sampled after this parameter"),
    ("test metric", {"space": SPACE, "objective": {"kind": "single", "metric": "test/task0/auc"}}, "tune.objective.metric: 'test/task0/auc': a study may only see validation metrics"),
    ("unknown metric", {"space": SPACE, "objective": {"kind": "multi", "metrics": ["val/task7/auc"]}}, "tune.objective: unknown metric 'val/task7/auc'"),
    ("prune multi", {"space": SPACE, "objective": {"kind": "multi"}, "pruner": {"name": "median"}}, "cannot prune multi-objective"),
    ("bad sampler", {"space": SPACE, "sampler": {"name": "annealing"}}, "tune.sampler: unknown sampler 'annealing'"),
    ("bad pruner params", {"space": SPACE, "pruner": {"name": "median", "params": {"startup": 1}}}, "tune.pruner: median params"),
    ("bad enqueue", {"space": SPACE, "enqueue": [{"trainer.momentum": 0.9}]}, "tune.enqueue[0]: trainer.momentum not in tune.space"),
    ("enqueue below a log range", {"space": {"trainer.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}},
                                   "enqueue": [{"trainer.weight_decay": 0.0}]},
     "tune.enqueue[0].trainer.weight_decay: 0.0 is outside the search space (number in [1e-06, 0.01], log scale)"),
    ("enqueue off the int step", {"space": {"trainer.batch_size": {"type": "int", "low": 32, "high": 256, "step": 32}},
                                  "enqueue": [{"trainer.batch_size": 100}]},
     "tune.enqueue[0].trainer.batch_size: 100 is outside the search space (integer in [32, 256], step 32)"),
    ("enqueue not a choice", {"space": SPACE, "enqueue": [{"model.params.num_experts": 99}]}, "tune.enqueue[0].model.params.num_experts: 99"),
    ("bad override", {"space": SPACE, "trial_overrides": {"trainer.max_epochs": 0}}, "tune.trial_overrides: trainer.max_epochs"),
    ("n_trials", {"space": SPACE, "n_trials": 0}, "tune.n_trials"),
]


@pytest.mark.parametrize("tune,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_search_space_fails_before_any_trial_naming_the_field(tmp_path: Path, tune: dict[str, Any], expected: str) -> None:
    path = write_pipeline(tmp_path, tune)
    with pytest.raises(SpecError) as err:
        plan_study(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing ran, no data read


def test_missing_tune_section_is_named(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, {})
    with pytest.raises(SpecError, match="tune: missing"):
        plan_study(path)


def test_parse_tune_rejects_unknown_top_level_key() -> None:
    with pytest.raises(SpecError, match="p.yaml: tune.trials: unknown key"):
        parse_tune({"space": SPACE, "trials": 3}, "p.yaml")


def test_resolve_names_the_rejected_field() -> None:
    cfg, _ = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "synthetic_mmoe.yaml")
    with pytest.raises(SpecError, match="trainer.lr"):
        resolve(cfg, {"trainer.lr": -1.0})


@pytest.mark.parametrize("name", ["synthetic_mmoe_tune.yaml", "census_mmoe_tune.yaml"])
def test_shipped_tune_pipelines_are_valid(name: str, tmp_path: Path) -> None:
    p = plan_study(Path(__file__).resolve().parents[2] / "pipelines" / name, runs_dir=tmp_path)
    assert len(p.directions) == 2 and p.tune.enqueue  # Pareto studies that start from the untuned default
