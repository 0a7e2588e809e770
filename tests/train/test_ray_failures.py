"""The run folder's ``restarts.json``, without starting Ray: written only when a worker failed.

Two pieces of code write it: :class:`FailureLog` (Ray Train's controller calls it after a worker
group failed) appends a record, and the resumed rank 0 (``_note_resume``) completes the latest record
with the checkpoint it resumed from. A fit where nothing failed calls the first never and the second
with no record to complete: so no file. The Ray Train run with a killed worker is test_ray_fit.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recsys-mtl[ray]')")

from ray.exceptions import ActorDiedError  # noqa: E402

from recsys_mtl.train.ray_failures import RESTARTS_FILE, FailureLog, format_restart, restarts  # noqa: E402
from recsys_mtl.train.ray_fit import LAST_CHECKPOINT, _note_resume  # noqa: E402


def run_with_last_checkpoint(tmp_path: Path, epoch: int, global_step: int) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": epoch, "global_step": global_step, "state_dict": {"w": torch.zeros(2)}}, run / LAST_CHECKPOINT)
    return run


def test_a_start_with_no_failure_recorded_writes_no_restarts_file(tmp_path: Path) -> None:
    run = run_with_last_checkpoint(tmp_path, epoch=2, global_step=30)  # e.g. fit --engine ray --resume after a clean stop
    _note_resume(run, run / LAST_CHECKPOINT)
    assert not (run / RESTARTS_FILE).exists() and restarts(run) == []


def test_failure_log_records_the_dead_worker_first_and_the_resume_completes_it(tmp_path: Path) -> None:
    run = run_with_last_checkpoint(tmp_path, epoch=0, global_step=14)
    log = FailureLog(str(run), max_failures=1)
    log.after_exception(None, {0: RuntimeError("Connection closed by peer"), 1: ActorDiedError()})
    (record,) = restarts(run)
    assert record["attempt"] == 1 and record["max_failures"] == 1 and "resumed_from" not in record
    assert [(w["worker_rank"], w["died"]) for w in record["workers"]] == [(1, True), (0, False)]
    assert record["workers"][1]["what"] == "raised RuntimeError: Connection closed by peer"
    _note_resume(run, run / LAST_CHECKPOINT)
    (record,) = restarts(run)
    assert record["resumed_from"] == {"checkpoint": LAST_CHECKPOINT, "epoch": 0, "global_step": 14}
    assert "worker 1: the worker process died" in format_restart(record)
    assert "restarted from checkpoints/last.ckpt (saved at epoch 0, step 14)" in format_restart(record)
    log.after_exception(None, {1: ActorDiedError()})  # a second failure: a second record
    assert [r["attempt"] for r in restarts(run)] == [1, 2]


def test_failure_log_before_the_run_folder_exists_writes_nothing(tmp_path: Path) -> None:
    """A worker that failed before any worker created the run folder: nothing to resume, no folder made."""
    FailureLog(str(tmp_path / "run"), max_failures=1).after_exception(None, {0: RuntimeError("bad data")})
    assert not (tmp_path / "run").exists()
