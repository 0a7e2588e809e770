"""DDP on two CPU processes (gloo): a short fit completes, ranks agree, evaluation covers every row.

Lightning's DDP launcher re-runs the calling script for rank 1, so the fits run in a script of
their own, in a subprocess with a timeout. One launch runs every fit in turn (each launch costs two
interpreters importing torch and Lightning); each test reads the records of its own fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.train.datamodule import TableDataModule

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
from pathlib import Path
import lightning as L
import torch
torch.set_num_threads(1)
from recsys_mtl.spec import load_pipeline
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
SMALL = ["data.rows=2000", "trainer.max_epochs=1", "trainer.batch_size=128"]
for method in ("mgda", "pcgrad"):
    os.environ[RUN_DIR_ENV] = str(out / method / "run")
    fit(*load(method, [*SMALL, f"balancing.name={method}"]), extra_callbacks=[RecordWeights(method)])
os.environ[RUN_DIR_ENV] = str(out / "sparse" / "run")
fit(*load("sparse", [*SMALL, "trainer.sparse_min_rows=0"]), extra_callbacks=[RecordSparse()])

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
"""


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one two-process launch of SCRIPT (its records are ``<fit>_rank<r>.json``)."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "ddp_fits.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(ROOT / "pipelines" / "synthetic_mmoe.yaml")],
        capture_output=True, text=True, timeout=600, cwd=out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def records(out: Path, name: str) -> tuple[dict, dict]:
    return json.loads((out / f"{name}_rank0.json").read_text()), json.loads((out / f"{name}_rank1.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_fit_and_agree(ddp_out: Path) -> None:
    r0 = json.loads((ddp_out / "rank0.json").read_text())
    r1 = json.loads((ddp_out / "rank1.json").read_text())
    assert r0["run_dir"] == r1["run_dir"]  # rank 1 writes into rank 0's run folder
    assert len(list((ddp_out / "fit" / "runs").iterdir())) == 1
    assert (Path(r0["run_dir"]) / "metrics.json").is_file()
    assert r0["epochs"] == r1["epochs"] == 2
    assert r0["val"] == r1["val"] and r0["test"] == r1["test"]  # synced: equal on each rank
    # every validation row evaluated exactly once across the two ranks: the AUC of the
    # selected checkpoint is the one a single process computes over the whole split
    for key in ("task0/auc", "task1/auc", "auc_mean"):
        assert r0["val"][key] == pytest.approx(r0["single_val"][key], abs=1e-5), key
    assert r0["val"]["task0/auc"] > 0.6


def test_eval_loaders_cover_every_row_once_across_ranks() -> None:
    n = 1001  # not divisible by 2 or 3
    table = EncodedTable(
        categorical=torch.zeros(n, 1, dtype=torch.int64), numeric=torch.arange(n, dtype=torch.float32)[:, None],
        sequences={}, labels=torch.zeros(n, 1), weights=torch.ones(n, 1),
    )
    for world in (1, 2, 3):
        seen: list[int] = []
        for rank in range(world):
            dm = TableDataModule(table, table, table, batch_size=64, eval_batch_size=100, seed=0)
            dm._shard = lambda r=rank: {"rank": r, "world_size": world}  # type: ignore[method-assign]
            for loader in (dm.val_dataloader(),):
                seen += [int(v) for b in loader for v in b["numeric"][:, 0].tolist()]
        assert sorted(seen) == list(range(n)), world


@pytest.mark.slow
@pytest.mark.parametrize("method, reports_weights", [("mgda", True), ("pcgrad", False)])
def test_ddp_gradient_balancing_agrees_across_ranks(ddp_out: Path, method: str, reports_weights: bool) -> None:
    """Gradient methods under DDP: each rank computes the same task weights from the all-reduced
    task-gradient Gram matrix, and the replicas end with identical parameters."""
    r0, r1 = records(ddp_out, method)
    assert len(r0["weights"]) == len(r1["weights"]) > 1
    for w0, w1 in zip(r0["weights"], r1["weights"]):  # every step: the same weights on both ranks
        assert w0 == pytest.approx(w1, rel=1e-5)
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-9)
    assert all(w == w and w > 0 for step in r0["weights"] for w in step)  # finite, positive
    if reports_weights:  # MGDA's weights move off 1, so equality across ranks is not trivial
        assert any(abs(w - 1.0) > 1e-3 for step in r0["weights"] for w in step)


@pytest.mark.slow
def test_ddp_sparse_embeddings_agree_across_ranks(ddp_out: Path) -> None:
    """Sparse embedding gradients are all-reduced like dense ones: both replicas end equal."""
    r0, r1 = records(ddp_out, "sparse")
    assert r0["optimizer"] == "CombinedOptimizer" and len(r0["sparse"]) >= 3 and r0["sparse"] == r1["sparse"]
    assert r0["params"].keys() == r1["params"].keys()
    for name, values in r0["params"].items():
        assert values == pytest.approx(r1["params"][name], rel=1e-6, abs=1e-7), name
