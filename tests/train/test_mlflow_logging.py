"""MLflow logging of a fit through Lightning's MLFlowLogger: params, metrics, run and experiment
names read back with MLflow's own client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from recsys_mtl.errors import RecsysMTLError, SpecError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=300", f"data.cache_dir={tmp_path / 'cache'}", f"runs_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=2", "trainer.batch_size=128", "trainer.progress_bar=false", "trainer.plots=false", "trainer.log_every_n_steps=1",
        *extra,
    ])


@pytest.mark.slow
def test_fit_logs_params_and_metrics_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra (installed by the dev extra)")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    cfg, spec = tiny(tmp_path, "trainer.mlflow={tags: {team: ranking}}")
    result = fit(cfg, spec)

    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")  # the default store
    experiment = client.get_experiment_by_name("synthetic_mmoe")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == result.run_dir.name and run.info.status == "FINISHED"
    assert run.data.tags["team"] == "ranking" and run.data.tags["recsys_mtl.run_dir"] == str(result.run_dir)
    params = run.data.params
    assert params["model/name"] == "mmoe" and params["model/params/num_experts"] == "4"
    assert params["trainer/lr"] == "0.003" and params["trainer/seed"] == "42" and params["data/rows"] == "300"
    metrics = run.data.metrics  # the last value of each
    assert metrics["test/task0/auc"] == pytest.approx(result.metrics["test"]["task0/auc"], abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(result.metrics["val"]["loss"], abs=1e-6)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 2 and all(m.value > 0 for m in history)
    val_auc = client.get_metric_history(run.info.run_id, "val/auc_mean")
    assert len({m.step for m in val_auc}) >= 2  # one per epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "runs"]

    # resuming the run folder continues its MLflow run
    cfg3, _ = tiny(tmp_path, "trainer.mlflow={tags: {team: ranking}}", "trainer.max_epochs=3")
    fit(cfg3, spec, resume=result.run_dir)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.params["trainer/max_epochs"] == "2" and again.data.tags["resumed/trainer/max_epochs"] == "3"
    assert len(client.get_metric_history(run.info.run_id, "val/auc_mean")) > len(val_auc)


def test_mlflow_without_the_package_is_named_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    cfg, spec = tiny(tmp_path, "trainer.mlflow=true")
    with pytest.raises(SpecError, match=r"trainer.mlflow: .*pip install 'recsys-mtl\[mlflow\]'"):
        fit(cfg, spec)
    assert not (tmp_path / "runs").exists()


def test_mlflow_switch_and_unknown_keys(tmp_path: Path) -> None:
    cfg, _ = tiny(tmp_path, "trainer.mlflow=true")
    assert cfg.trainer.mlflow is not None and cfg.trainer.mlflow.tracking_uri is None
    assert tiny(tmp_path, "trainer.mlflow=false")[0].trainer.mlflow is None
    with pytest.raises(SpecError, match=r"trainer.mlflow.experiment_name: unknown key \(did you mean 'experiment'\?\)"):
        tiny(tmp_path, "trainer.mlflow={experiment_name: x}")


def test_a_store_mlflow_cannot_use_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra (installed by the dev extra)")
    from recsys_mtl.train.loggers import mlflow_logger

    # an unknown scheme: refused when the pipeline is read, before any data or training
    with pytest.raises(SpecError, match=r"trainer.mlflow.tracking_uri: unsupported scheme 'nope'"):
        tiny(tmp_path, "trainer.mlflow={tracking_uri: 'nope://x'}")
    assert tiny(tmp_path, "trainer.mlflow={tracking_uri: 'postgresql+psycopg2://u@h/db'}")[0].trainer.mlflow is not None
    # a known scheme MLflow still refuses (plain-folder stores, MLflow 3): named when the logger opens
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "store").as_uri()
    cfg, _ = tiny(tmp_path, f"trainer.mlflow={{tracking_uri: '{uri}'}}")
    with pytest.raises(RecsysMTLError, match=r"trainer.mlflow: cannot log to 'file:"):
        mlflow_logger(cfg, tmp_path / "run")


def test_runs_derived_from_a_pipeline_log_to_its_experiment_and_store(tmp_path: Path) -> None:
    from recsys_mtl.train.loggers import mlflow_assignments
    from recsys_mtl.tune.paths import resolve

    cfg, _ = tiny(tmp_path, "trainer.mlflow=true")
    trial = resolve(cfg, {"name": "trial0003", "runs_dir": tmp_path / "runs" / "tune" / "trials", **mlflow_assignments(cfg)})
    assert trial.trainer.mlflow is not None
    assert trial.trainer.mlflow.experiment == "synthetic_mmoe"
    assert trial.trainer.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert mlflow_assignments(tiny(tmp_path)[0]) == {}  # off stays off
