"""``fit --engine ray`` on a local Ray instance (2 CPUs): Ray Train runs the library's Lightning fit in
two workers. One Ray Train run (each costs ~30 CPU s of process start-up) checks both claims: a worker
killed mid-fit is reported (which worker, what happened) and the fit resumes from the last checkpoint,
and the finished 2-worker fit reaches a 1-process fit's test AUC and writes the same run folder.
What only a clean run could show (no restarts.json, the CLI's ``--engine ray`` path and its output) is
checked without Ray in test_ray_failures.py and test_ray_options.py.

One Ray instance (the conftest's ``local_ray``) serves every Ray test of the pytest process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import pytest

from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recsys-mtl[ray]')")

from recsys_mtl.train.ray_fit import RESTARTS_FILE, RayOptions, _without_idle_dataset_manager, format_restart, ray_fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "synthetic_mmoe.yaml"
COMMON = ["trainer.progress_bar=false", "trainer.accelerator=cpu", "trainer.deterministic=false", "trainer.patience=8"]
#: the data and epochs of benchmarks/ray_fit.py, where 3 seeds give test AUCs 0.984 ± 0.001 either way
#: (the fit loop is seconds; Ray's start-up is the cost)
MATCH = ["data.rows=10000", "trainer.max_epochs=8"]
SMALL = ["data.rows=4000", "trainer.max_epochs=3"]
BATCH = 512  # the 1-process batch; each of 2 Ray workers takes half, so the global batch and the steps match


def overrides(tmp: Path, batch: int, size: list[str] = SMALL) -> list[str]:
    return [*COMMON, *size, f"trainer.batch_size={batch}", f"data.cache_dir={tmp / 'cache'}", f"runs_dir={tmp / 'runs'}"]


def tree(run_dir: Path) -> set[str]:
    """The run folder's files; TensorBoard event files (named by time, host and pid) as their folder."""
    return {(p.parent if p.name.startswith("events.") else p).relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


class KillOnce(L.Callback):
    """Ends worker ``rank``'s process (``os._exit``) at batch ``step`` of ``epoch``, on the first attempt only
    (the marker file survives the restart); every worker logs where each attempt's training starts."""

    def __init__(self, marker: Path, rank: int, epoch: int, step: int) -> None:
        self.marker, self.rank, self.epoch, self.step = marker, rank, epoch, step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with open(f"{self.marker}.starts", "a") as f:
            f.write(json.dumps({"rank": trainer.global_rank, "epoch": trainer.current_epoch, "step": trainer.global_step}) + "\n")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int) -> None:
        if (trainer.global_rank, trainer.current_epoch, batch_idx) == (self.rank, self.epoch, self.step) and not self.marker.exists():
            self.marker.write_text("killed")
            sys.stdout.flush()
            os._exit(3)


@pytest.mark.slow
def test_two_ray_workers_match_one_process_through_a_killed_worker(tmp_path: Path, local_ray: object) -> None:
    """One Ray Train run makes both claims (each Ray fit is ~30 CPU s of process start-up): worker 1 is
    killed in epoch 1, the failure is recorded and reported, the workers resume from last.ckpt, and the
    finished fit still matches a 1-process fit (AUCs, split sizes, epochs, run folder)."""
    cfg, spec = load_pipeline(PIPELINE, overrides(tmp_path / "local", BATCH, MATCH))
    local = fit(cfg, spec)
    cfg, spec = load_pipeline(PIPELINE, overrides(tmp_path / "ray", BATCH // 2, MATCH))
    marker = tmp_path / "killed"
    result = ray_fit(cfg, spec, RayOptions(workers=2, max_failures=1), extra_callbacks=[KillOnce(marker, rank=1, epoch=1, step=2)])
    assert marker.exists()  # the kill happened
    (ray_dir,) = (tmp_path / "ray" / "runs").iterdir()  # the resumed attempt wrote into the first attempt's folder
    assert result.run_dir == ray_dir

    # the failure: recorded, described, and the restart resumed at the epoch of the kill, not from scratch
    (record,) = result.restarts
    first = record["workers"][0]  # the dead worker first; the other's closed connection follows from it
    assert first["worker_rank"] == 1 and first["died"] and "died" in first["what"] and "pid" in first["what"]
    assert {w["worker_rank"] for w in record["workers"]} <= {0, 1}
    assert record["resumed_from"]["checkpoint"] == "checkpoints/last.ckpt" and record["resumed_from"]["epoch"] == 0
    line = format_restart(record)
    assert "worker 1: the worker process died" in line and "restarted from checkpoints/last.ckpt" in line
    starts = [json.loads(s) for s in Path(f"{marker}.starts").read_text().splitlines()]
    assert sorted((s["rank"], s["epoch"]) for s in starts) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # resumed at epoch 1, not from scratch
    assert {s["step"] for s in starts if s["epoch"] == 1} == {record["resumed_from"]["global_step"]}

    # the finished fit: as the 1-process one
    m = result.metrics
    assert json.loads((ray_dir / "metrics.json").read_text()) == m
    assert m["epochs_run"] == local.metrics["epochs_run"] == 8
    assert m["split_sizes"] == local.metrics["split_sizes"]
    for key in ("task0/auc", "task1/auc"):  # seed noise ≈ 0.001 here; 0.01 is far outside it yet fails a broken shard
        assert m["test"][key] == pytest.approx(local.metrics["test"][key], abs=0.01), key
        assert m["test"][key] > 0.95
    # rank 0 trained on half the rows of each epoch; its count (throughput) covers the resumed attempt's epochs only
    resumed_epochs = m["epochs_run"] - (record["resumed_from"]["epoch"] + 1)
    assert m["train_rows"] * 2 == pytest.approx(local.metrics["train_rows"] * resumed_epochs / m["epochs_run"], rel=0.05)
    assert tree(ray_dir) == tree(local.run_dir) | {RESTARTS_FILE}  # the failure record is the one file more
    assert {p.name for p in (ray_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert not (ray_dir / "FAILED").exists() and not (local.run_dir / "FAILED").exists()


def test_refused_before_ray_starts(tmp_path: Path) -> None:
    with pytest.raises(RecsysMTLError, match="--workers must be at least 1"):
        RayOptions(workers=0)
    cfg, spec = load_pipeline(PIPELINE, overrides(tmp_path, BATCH))
    (tmp_path / "run").mkdir()
    with pytest.raises(RecsysMTLError, match="no checkpoints/last.ckpt to resume from"):
        ray_fit(cfg, spec, resume=tmp_path / "run")


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray.train.lightning", None)  # an import of it raises ImportError
    cfg, spec = load_pipeline(PIPELINE, overrides(tmp_path, BATCH))
    with pytest.raises(RecsysMTLError, match=r"pip install 'recsys-mtl\[ray\]'"):
        ray_fit(cfg, spec)


def test_no_dataset_manager_without_datasets() -> None:
    """Ray Train's datasets callback (a DatasetManager actor per worker-group start) is left out only
    when the trainer has no datasets."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks import DatasetsCallback

    trainer_cls = _without_idle_dataset_manager(TorchTrainer)
    assert issubclass(trainer_cls, TorchTrainer)

    def kinds(datasets: dict[str, object] | None) -> set[type]:
        trainer = trainer_cls(lambda: None, scaling_config=ScalingConfig(num_workers=1), datasets=datasets)
        return {type(c) for c in trainer._create_default_callbacks()}

    without, with_data = kinds(None), kinds({"train": lambda: None})
    assert DatasetsCallback not in without and DatasetsCallback in with_data
    assert with_data - without == {DatasetsCallback}  # every other callback of Ray's stays
