"""A study resumes only with the pipeline its trials ran with (SQLite in tmp_path; no trial is fitted)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from recsys_mtl.cli import main
from recsys_mtl.errors import SpecError
from recsys_mtl.tune import open_study, plan_study
from recsys_mtl.tune.fingerprint import FINGERPRINT_ATTR, PIPELINE_ATTR, changes, fingerprint, path_identity, pipeline_identity
from recsys_mtl.tune.study import LegacyStudyWarning
from tests.support.tune import write_pipeline

TUNE = {
    "n_trials": 4,
    "objective": {"kind": "multi"},
    "sampler": {"name": "random", "params": {"seed": 1}},
    "space": {"trainer.lr": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
              "model.params.num_experts": {"type": "int", "low": 1, "high": 3}},
}


def _identity(path: Path, *overrides: str) -> dict:
    plan = plan_study(path, overrides)
    return pipeline_identity(plan.cfg, plan.spec, plan.tune)


def test_identity_ignores_searched_values_and_study_logistics(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, TUNE)
    base = _identity(path)
    # searched paths (each trial sets them), and what steers the search or where things go
    same = _identity(path, "trainer.lr=0.5", "model.params.num_experts=7", "tune.n_trials=40", "tune.timeout=60",
                     "tune.sampler.params.seed=3", "tune.refit_min_gain=0.01", "tune.plots=none",
                     f"runs_dir={tmp_path / 'elsewhere'}", "trainer.progress_bar=true", "name=other")
    assert fingerprint(same) == fingerprint(base)
    assert "lr" not in base["trainer"] and "num_experts" not in base["model"]["params"]
    assert base["spec"]["name"] == "synthetic"  # the spec by content, not by file path


def test_the_data_cache_folders_are_not_part_of_the_identity(tmp_path: Path) -> None:
    # generated data is keyed by its settings, census copies by their source file: where they are kept
    # (or whether census files are cached at all) changes no trial
    census = Path(__file__).resolve().parents[2] / "pipelines" / "census_mmoe_tune.yaml"
    for path in (write_pipeline(tmp_path, TUNE), census):
        base = _identity(path)
        assert "cache_dir" not in base["data"]
        moved = _identity(path, f"data.cache_dir={tmp_path / 'elsewhere'}")
        assert fingerprint(moved) == fingerprint(base)
    assert fingerprint(_identity(census, "data.cache_dir=null")) == fingerprint(_identity(census))


def test_changes_name_every_changed_field_by_dotted_path(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, TUNE)
    new = _identity(path, "trainer.max_epochs=5", "tune.trial_overrides={trainer.max_epochs: 1}", "tune.train_fraction=0.5",
                    "data.rows=1300")
    assert changes(_identity(path), new) == [
        "data.rows: 1200 -> 1300",
        "trainer.max_epochs: 2 -> 5",
        "tune.train_fraction: 1.0 -> 0.5",
        "tune.trial_overrides.trainer.max_epochs: <absent> -> 1",
    ]


def test_same_pipeline_resumes_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, TUNE)
    study = open_study(plan_study(path))
    assert study.user_attrs[FINGERPRINT_ATTR] == fingerprint(study.user_attrs[PIPELINE_ATTR])
    assert len(study.trials) == 1  # the enqueued default

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recorded, unchanged pipeline resumes silently
        again = open_study(plan_study(path, n_trials=9))  # more trials: the same study
    assert again._study_id == study._study_id and len(again.trials) == 1  # the default is not enqueued twice

    with pytest.raises(SpecError) as err:
        open_study(plan_study(path, ["trainer.max_epochs=5"]))
    msg = str(err.value)
    assert "trainer.max_epochs: 2 -> 5" in msg and "study 'tiny'" in msg
    assert "--study" in msg and "tune.allow_changed_pipeline=true" in msg

    resumed = open_study(plan_study(path, ["trainer.max_epochs=5", "tune.allow_changed_pipeline=true"]))
    assert resumed.user_attrs["resumed_with_changes"] == [["trainer.max_epochs: 2 -> 5"]]
    assert resumed.user_attrs[FINGERPRINT_ATTR] == study.user_attrs[FINGERPRINT_ATTR]  # still the creating pipeline's


def test_a_study_from_before_the_check_resumes_with_a_warning(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, TUNE)
    plan = plan_study(path)
    plan.area.mkdir(parents=True)
    legacy = optuna.create_study(study_name=plan.study_name, storage=plan.storage_url, directions=plan.directions)
    legacy.set_user_attr("metrics", plan.metrics)
    legacy.enqueue_trial({"trainer.lr": 0.01})
    with pytest.warns(LegacyStudyWarning, match="no recorded pipeline"):
        study = open_study(plan)
    assert FINGERPRINT_ATTR not in study.user_attrs and len(study.trials) == 1


def test_cli_refuses_a_changed_pipeline_before_reading_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_pipeline(tmp_path, TUNE)
    open_study(plan_study(path))
    assert main(["tune", str(path), "--set", "trainer.batch_size=64", "--no-refit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: study 'tiny'") and "trainer.batch_size: 128 -> 64" in err
    assert not (tmp_path / "cache").exists()  # refused before the data was generated


def _files_pipeline(tmp: Path, data: Path) -> Path:
    """``write_pipeline``'s pipeline reading its train file from ``data`` (resuming reads no data: any bytes do)."""
    path = write_pipeline(tmp, TUNE)
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {"kind": "files", "train": str(data / "train.csv")}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_study_resumes_from_a_moved_checkout_but_not_with_other_data(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"  # one storage, as workers on two machines share one
    first, moved = tmp_path / "machine_a" / "data", tmp_path / "machine_b" / "mnt" / "data"
    first.mkdir(parents=True)
    (first / "train.csv").write_text("x,task0,task1\n1,0,1\n")
    shutil.copytree(first, moved)
    study = open_study(plan_study(_files_pipeline(tmp_path / "machine_a", first), [f"tune.storage={storage}"]))
    assert study.user_attrs[PIPELINE_ATTR]["data"]["train"]["name"] == "train.csv"
    again = open_study(plan_study(_files_pipeline(tmp_path / "machine_b", moved), [f"tune.storage={storage}"]))
    assert again._study_id == study._study_id

    (moved / "train.csv").write_text("x,task0,task1\n1,0,1\n2,1,0\n")  # the table refreshed on one machine
    with pytest.raises(SpecError, match=r"data\.train\.bytes: 20 -> 26; data\.train\.sha256: "):
        open_study(plan_study(_files_pipeline(tmp_path / "machine_b", moved), [f"tune.storage={storage}"]))


def test_a_study_recorded_with_data_paths_resumes_and_is_recorded_anew(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x,task0,task1\n1,0,1\n")
    plan = plan_study(_files_pipeline(tmp_path, tmp_path / "data"))
    plan.area.mkdir(parents=True)
    old = optuna.create_study(study_name=plan.study_name, storage=plan.storage_url, directions=plan.directions)
    old.set_user_attr("metrics", plan.metrics)
    by_path = path_identity(plan.cfg, plan.spec, plan.tune)  # what a study recorded before data entered by content
    old.set_user_attr(PIPELINE_ATTR, by_path)
    old.set_user_attr(FINGERPRINT_ATTR, fingerprint(by_path))
    old.enqueue_trial({"trainer.lr": 0.01})
    assert by_path["data"]["train"] == str(tmp_path / "data" / "train.csv")
    study = open_study(plan)
    assert study.user_attrs[FINGERPRINT_ATTR] == fingerprint(pipeline_identity(plan.cfg, plan.spec, plan.tune))
    assert study.user_attrs[PIPELINE_ATTR]["data"]["train"]["files"] == 1
