"""``fit --engine ray`` from the command line, without starting Ray: the flags reach :func:`ray_fit` as
:class:`RayOptions`, and the command prints the run folder and one line per recorded restart (none when
no worker failed). ``ray_fit`` is replaced by a fake; the Ray Train run itself is test_ray_fit.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys_mtl.cli import main

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recsys-mtl[ray]')")

from recsys_mtl.train import ray_fit as ray_fit_module  # noqa: E402
from recsys_mtl.train.ray_fit import RayFitResult, RayOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "synthetic_mmoe.yaml"
METRICS = {"val": {"task0/auc": 0.91, "task0/loss": 0.3}, "test": {"task0/auc": 0.9, "task1/auc": 0.8}, "best_epoch": 3,
           "train_rows_per_sec": 1234.0, "peak_rss_mib": 321.0}
RESTART = {"attempt": 1, "max_failures": 1, "workers": [{"worker_rank": 1, "died": True, "what": "the worker process died (pid 7)"}],
           "resumed_from": {"checkpoint": "checkpoints/last.ckpt", "epoch": 0, "global_step": 14}}


pytestmark = pytest.mark.usefixtures("restore_lightning_log_levels")  # main() runs in process


def fake_ray_fit(calls: list[dict[str, Any]], run_dir: Path, restarts: list[dict[str, Any]]) -> Any:
    def ray_fit(cfg: Any, spec: Any, options: RayOptions, **kwargs: Any) -> RayFitResult:
        calls.append({"cfg": cfg, "options": options, **kwargs})
        return RayFitResult(run_dir, METRICS, restarts)

    return ray_fit


@pytest.mark.parametrize("restarts", [[], [RESTART]], ids=["clean", "one-restart"])
def test_fit_engine_ray_reaches_ray_fit_and_prints_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str], restarts: list[dict[str, Any]]) -> None:
    calls: list[dict[str, Any]] = []
    run_dir = tmp_path / "runs" / "synthetic_mmoe-x"
    monkeypatch.setattr(ray_fit_module, "ray_fit", fake_ray_fit(calls, run_dir, restarts))
    argv = ["fit", str(PIPELINE), "--engine", "ray", "--workers", "3", "--cpus-per-worker", "0.5", "--max-failures", "1",
            "--set", "trainer.batch_size=256", "--set", f"runs_dir={tmp_path / 'runs'}"]
    assert main(argv) == 0
    (call,) = calls
    assert call["options"] == RayOptions(workers=3, address=None, cpus_per_worker=0.5, use_gpu=False, max_failures=1)
    assert call["cfg"].trainer.batch_size == 256 and call["cfg"].runs_dir == tmp_path / "runs"
    assert call["resume"] is None and call["init_from"] is None and call["extra_callbacks"] == []
    out = capsys.readouterr().out
    assert f"run folder: {run_dir}" in out
    assert "test: task0/auc=0.9000  task1/auc=0.8000" in out
    failures = [line for line in out.splitlines() if line.startswith("Ray fit failure")]
    # one line per recorded restart, none for a fit where no worker failed
    assert failures == [ray_fit_module.format_restart(r) for r in restarts]


def test_fit_engine_ray_defaults_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray_fit_module, "ray_fit", fake_ray_fit(calls, tmp_path, []))
    argv = ["fit", str(PIPELINE), "--engine", "ray", "--address", "auto", "--gpus", "--resume", str(tmp_path / "run")]
    assert main(argv) == 0
    (call,) = calls
    assert call["options"] == RayOptions(workers=2, address="auto", cpus_per_worker=1.0, use_gpu=True, max_failures=2)
    assert call["resume"] == tmp_path / "run"


def test_fit_engine_local_does_not_reach_ray_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flag decides: without ``--engine ray`` (the default) the fit is the local one."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray_fit_module, "ray_fit", fake_ray_fit(calls, tmp_path, []))

    def local_fit(cfg: Any, spec: Any, **kwargs: Any) -> RayFitResult:
        calls.append({"local": True})
        return RayFitResult(tmp_path, METRICS)

    monkeypatch.setattr("recsys_mtl.train.fit.fit", local_fit)
    assert main(["fit", str(PIPELINE), "--workers", "3"]) == 0
    assert calls == [{"local": True}]
