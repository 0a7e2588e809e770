"""A non-finite training loss stops the fit at once: the error names the step, the task and the
cause; the last good checkpoint stays; no metrics, calibration or curves are written; the run folder
is marked FAILED, refused by export, and a resume that finishes clears the mark."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from recsys_mtl.artifacts import load_checkpoint
from recsys_mtl.errors import DataError
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.finite_guard import NonFiniteLossError
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import FAILED_MARKER, check_finite_results, load_run
from tests.support.balancer_table import SHORT_FIT
from tests.support.ddp import ddp_out, records  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4  # 600 rows x 0.8 train share / 128


def _cfg(tmp_path: Path, method: str = "equal", *extra: str):  # type: ignore[no-untyped-def]
    return load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=600", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=3", "trainer.patience=5",
        "trainer.batch_size=128", "trainer.progress_bar=false", f"runs_dir={tmp_path / 'runs'}",
        f"balancing.name={method}", *SHORT_FIT[method], *extra,
    ])


class Poison(L.Callback):
    """At global step ``step``, poisons the batch's first numeric column (``what="input"``) or one
    weight of the model (``what="weights"``) with ``value``."""

    def __init__(self, step: int, what: str, value: float = math.inf):
        self.step, self.what, self.value = step, what, value

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        if self.what == "input":
            batch["numeric"][3, 0] = torch.tensor(self.value, dtype=torch.float64).float()  # as a float32 cast does
        else:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(self.value)


def _run_dir(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs").iterdir()
    return run


@pytest.mark.parametrize("method", ["equal", "pcgrad", "gcond", "uncertainty"])
def test_non_finite_input_stops_the_fit_naming_step_task_and_feature(tmp_path: Path, method: str) -> None:
    cfg, spec = _cfg(tmp_path, method)
    step = STEPS_PER_EPOCH + 1  # in the second epoch: the first one left a good checkpoint
    with pytest.raises(NonFiniteLossError) as err:
        fit(cfg, spec, extra_callbacks=[Poison(step, "input", 1e300)])  # float64 holds it, float32 does not
    text = str(err.value)
    assert f"at step {step}" in text and "task 'task0'" in text
    assert "input feature" in text and "row 3 of the batch" in text
    run = _run_dir(tmp_path)
    assert (run / FAILED_MARKER).read_text().startswith("NonFiniteLossError: training loss is not finite")
    for name in ("metrics.json", "calibration.json", "curves.png", "reliability.png"):
        assert not (run / name).exists(), name
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == STEPS_PER_EPOCH  # the last good epoch, not the poisoned step
    assert all(bool(torch.isfinite(v).all()) for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_non_finite_weights_then_export_is_refused_and_resume_finishes(tmp_path: Path) -> None:
    cfg, spec = _cfg(tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"at step 6 .*weights are no longer finite"):
        fit(cfg, spec, extra_callbacks=[Poison(6, "weights", math.nan)])
    run = _run_dir(tmp_path)
    with pytest.raises(DataError, match=r"the fit of this run failed \(NonFiniteLossError"):
        load_run(run)  # what export and report read
    result = fit(cfg, spec, resume=run)
    assert result.run_dir == run and not (run / FAILED_MARKER).exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and math.isfinite(metrics["val"]["task0/loss"])
    load_run(run)


def test_results_with_a_non_finite_loss_are_refused_and_undefined_metrics_written_as_null(tmp_path: Path) -> None:
    ok: dict[str, Any] = {"val": {"task0/auc": math.nan, "task0/loss": 0.5}, "monitor": {"best": 0.5}}
    check_finite_results(ok, tmp_path / "metrics.json")
    assert ok["val"]["task0/auc"] is None
    with pytest.raises(Exception, match=r"metrics.json: val.task0/loss is nan"):
        check_finite_results({"val": {"task0/loss": math.nan}}, tmp_path / "metrics.json")
    with pytest.raises(Exception, match=r"monitor.best is inf"):
        check_finite_results({"monitor": {"best": math.inf}}, tmp_path / "metrics.json")


@pytest.mark.slow
def test_ddp_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(ddp_out: Path) -> None:  # noqa: F811
    """Rank 1's loss turns NaN at step 3 (the last fit of the shared DDP launch, ``tests/support/ddp.py``):
    both ranks stop there with the error (a rank left waiting would hang the launch until its timeout)."""
    r0, r1 = records(ddp_out, "guard")
    assert r0["error"] is not None and r1["error"] is not None, (r0, r1)  # no rank finished the fit
    assert "training loss is not finite at step 3 (epoch 0) on another DDP rank" in r0["error"], r0
    assert "training loss is not finite at step 3 (epoch 0) in task" in r1["error"], r1  # the poisoned rank's own
    run = ddp_out / "guard" / "run"  # the folder both ranks were given
    assert (run / FAILED_MARKER).is_file() and not (run / "metrics.json").exists()
