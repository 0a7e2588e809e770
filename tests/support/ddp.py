"""One two-process DDP launch (gloo, CPU) that runs every DDP fit the tests check, shared by
``tests/train/test_ddp.py`` and ``tests/train/test_finite_guard.py``.

Lightning's DDP launcher re-runs the calling script for rank 1, so the fits run in a script of their
own, in a subprocess with a timeout. One launch runs every fit in turn (each launch costs two
interpreters importing torch and Lightning, most of its time on 2 cores), once per pytest run
(:func:`tests.support.run_once.built_once`); each test reads the records of its own fit:
``rank<r>.json`` (a plain fit), ``<mgda|pcgrad>_rank<r>.json`` (task weights per step, a parameter
checksum), ``sparse_rank<r>.json`` (sparse embedding parameters), ``guard_rank<r>.json`` (the error
of a fit whose rank-1 loss turns NaN at step 3) and each fit's run folder under ``<fit>/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.run_once import built_once

SCRIPT = """
import json, os, sys
from pathlib import Path
import lightning as L
import torch
torch.set_num_threads(1)
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.finite_guard import NonFiniteLossError
from recsys_mtl.train.fit import RUN_DIR_ENV, build_module, fit, prepare
from recsys_mtl.train.datamodule import TableDataModule

out, pipeline = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ.get("LOCAL_RANK", "0"))
DDP = ["trainer.progress_bar=false", "trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
       "trainer.deterministic=false"]


def load(tag, overrides):
    return load_pipeline(pipeline, [*DDP, f"data.cache_dir={out / tag / 'cache'}", f"runs_dir={out / tag / 'runs'}", *overrides])


class RecordWeights(L.Callback):
    # read right after each step: DDP re-broadcasts rank 0's buffers at the next forward, so only
    # here does last_weights hold what this rank computed
    def __init__(self, tag):
        self.tag, self.weights = tag, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append(pl_module.balancer.last_weights.tolist())

    def on_train_end(self, trainer, pl_module):
        record = {
            "weights": self.weights,
            "checksum": float(sum(p.detach().double().sum() for p in pl_module.model.parameters())),
        }
        (out / f"{self.tag}_rank{trainer.global_rank}.json").write_text(json.dumps(record))


class RecordSparse(L.Callback):
    def on_train_end(self, trainer, pl_module):
        tables = {n: m for n, m in pl_module.model.named_modules() if isinstance(m, torch.nn.Embedding)}
        record = {
            "sparse": sorted(n for n, m in tables.items() if m.sparse),
            "optimizer": type(trainer.optimizers[0]).__name__,
            "params": {n: p.detach().double().flatten().tolist() for n, p in pl_module.model.named_parameters()},
        }
        (out / f"sparse_rank{trainer.global_rank}.json").write_text(json.dumps(record))


# first: a plain fit, whose rank 1 finds rank 0's run folder through the launcher's environment
cfg, spec = load("fit", ["data.rows=3000", "trainer.max_epochs=2", "trainer.batch_size=256", "trainer.eval_batch_size=333"])
result = fit(cfg, spec)
record = {"run_dir": str(result.run_dir), "val": result.metrics["val"], "test": result.metrics["test"],
          "epochs": result.metrics["epochs_run"], "best": result.metrics["best_checkpoint"]}

# the later fits reuse the process group; rank 1 was launched with the first fit's folder, so
# each fit's folder is pinned for both ranks
# (no pictures: the first fit draws them under DDP; these fits' records are numbers only)
SMALL = ["data.rows=2000", "trainer.max_epochs=1", "trainer.batch_size=128", "trainer.plots=false"]
for method in ("mgda", "pcgrad"):
    os.environ[RUN_DIR_ENV] = str(out / method / "run")
    fit(*load(method, [*SMALL, f"balancing.name={method}"]), extra_callbacks=[RecordWeights(method)])
os.environ[RUN_DIR_ENV] = str(out / "sparse" / "run")
fit(*load("sparse", [*SMALL, "trainer.sparse_min_rows=0"]), extra_callbacks=[RecordSparse()])


class PoisonRankOne(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 3:
            batch["numeric"][0, 0] = float("nan")


# last (it ends in an error on every rank): rank 1's loss turns NaN at step 3
os.environ[RUN_DIR_ENV] = str(out / "guard" / "run")
try:
    fit(*load("guard", ["data.rows=600", "trainer.max_epochs=2", "trainer.batch_size=64", "trainer.plots=false"]),
        extra_callbacks=[PoisonRankOne()])
    guard = {"error": None}
except NonFiniteLossError as exc:
    guard = {"error": str(exc)}
(out / f"guard_rank{rank}.json").write_text(json.dumps(guard))

if rank == 0:  # the first fit's selected checkpoint, evaluated again by one process over the whole split
    torch.distributed.destroy_process_group()  # else the metrics would try to sync with rank 1
    prep = prepare(cfg, spec)
    module = build_module(prep)
    t = cfg.trainer
    dm = TableDataModule(prep.train, prep.valid, prep.test, t.batch_size, t.eval_batch_size, t.seed)
    single = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    val = single.validate(module, datamodule=dm, ckpt_path=str(result.run_dir / result.metrics["best_checkpoint"]), verbose=False)[0]
    record["single_val"] = {k.removeprefix("val/"): float(v) for k, v in val.items()}
(out / f"rank{rank}.json").write_text(json.dumps(record))
# the records are written: skip the interpreter's teardown of torch and Lightning (~1 s a rank)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def _launch(out: Path) -> None:
    script = out / "ddp_fits.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(ROOT / "pipelines" / "synthetic_mmoe.yaml")],
        capture_output=True, text=True, timeout=600, cwd=out,  # a rank left waiting would hang until the timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def ddp_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the one two-process launch of SCRIPT in this pytest run."""
    return built_once(tmp_path_factory, "ddp_fits", _launch)


def records(out: Path, name: str) -> tuple[dict, dict]:
    """Rank 0's and rank 1's records of fit ``name``."""
    return json.loads((out / f"{name}_rank0.json").read_text()), json.loads((out / f"{name}_rank1.json").read_text())
