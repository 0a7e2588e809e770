"""``trainer.steps_per_execution``: groups of K batches, one optimizer step per batch, the same
training as K = 1 bit for bit (weights, optimizer and scheduler state, balancer buffers, the
step count), logs at the same steps, the finite-loss guard at the same step, resume, and what is
refused (DDP, val_check_interval, callbacks that read single batches)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import SpecError
from recsys_mtl.grouping import DataMaps
from recsys_mtl.spec import load_pipeline, load_spec
from recsys_mtl.train.callbacks import Throughput
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.execution import GroupedLoader, check_strategy, lightning_arguments
from recsys_mtl.train.finite_guard import NonFiniteLossError
from recsys_mtl.train.fit import Prepared, build_module, prepare
from recsys_mtl.train.pipeline_checks import check_trainer
from recsys_mtl.train.ray_fit import ray_fit
from tests.support.paths import ROOT
from tests.support.synthetic import make_context

BATCHES = 7  # 600 rows × 0.7 train share / 64: 6 full batches and one of 36 rows; K = 4 and 3 leave a shorter last group


def _prepared(tmp_path: Path, *overrides: str, pipeline: Path = ROOT / "pipelines" / "synthetic_mmoe.yaml") -> Prepared:
    data = ["data.rows=600", f"data.cache_dir={tmp_path / 'cache'}"] if pipeline.name == "synthetic_mmoe.yaml" else []
    cfg, spec = load_pipeline(pipeline, [
        *data, "trainer.batch_size=64", "trainer.progress_bar=false",
        "model.params={num_experts: 2, expert_hidden: [8], tower_hidden: [4]}", *overrides,
    ])
    return prepare(cfg, spec)


def _train(prep: Prepared, k: int, epochs: int = 1, callbacks: list[L.Callback] = (), logger: Any = False,
           ckpt: Path | None = None, save: Path | None = None) -> tuple[L.LightningModule, L.Trainer]:
    cfg = prep.cfg.model_copy(update={"trainer": prep.cfg.trainer.model_copy(update={"steps_per_execution": k, "max_epochs": epochs})})
    module = build_module(replace(prep, cfg=cfg))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, precision=cfg.trainer.precision, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, num_sanity_val_steps=0, limit_val_batches=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps, callbacks=[Throughput(), *callbacks], **lightning_arguments(cfg.trainer),
    )
    dm = TableDataModule(prep.train, prep.valid, None, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, cfg.trainer.seed)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=False)
    if save is not None:
        trainer.save_checkpoint(save)
    return module, trainer


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested state dicts → {path: leaf}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}/{i}").items()}
    return {prefix: value}


def _state(module: L.LightningModule, trainer: L.Trainer) -> dict[str, Any]:
    """Everything training changes: weights and buffers (the balancer's too, persistent or not),
    the optimizer's and schedulers' state, the step count."""
    state = {f"module/{k}": v for k, v in module.state_dict().items()}
    state |= {f"buffer/{k}": v for k, v in module.named_buffers()}
    state |= _flat([o.state_dict() for o in trainer.optimizers], "optimizer")
    state |= _flat([c.scheduler.state_dict() for c in trainer.lr_scheduler_configs], "scheduler")
    state["global_step"] = trainer.global_step
    return state


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), key
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), key
        elif not callable(x):
            assert x == y, key


CASES = {
    "equal": [],
    "pcgrad": ["balancing.name=pcgrad"],
    # a window of 3 batches crosses the groups of 4: steps and gradient clearing by the balancer
    "gcond": ["balancing.name=gcond", "balancing.params={accum_steps: 3}"],
    "famo": ["balancing.name=famo"],  # post-step losses of the same batch
    "coba": ["balancing.name=coba", "balancing.params={warmup_steps: 2, history: 4}"],  # validation batches per step
    "cosine_warmup_clip": ["trainer.lr_schedule=cosine", "trainer.warmup_fraction=0.3", "trainer.gradient_clip_val=0.05"],
    "bf16_mixed": ["trainer.precision=bf16-mixed"],  # backward outside autocast, as K = 1's
    # compiled (aot_eager: no code generation, a fast test) with the last, smaller batch eager
    "compiled": ["trainer.compile={backend: aot_eager, odd_batches: eager}"],
    "sparse_adam": ["trainer.sparse_min_rows=1", "trainer.embedding_optimizer=sparse_adam", "trainer.gradient_clip_val=0.05"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_groups_train_exactly_as_single_batches(tmp_path: Path, case: str) -> None:
    prep = _prepared(tmp_path, *CASES[case])
    want_module, want_trainer = _train(prep, 1)
    want = _state(want_module, want_trainer)
    assert want["global_step"] == BATCHES  # accumulated batches count as steps too (gcond)
    for k in (4, 3):
        module, trainer = _train(prep, k)
        assert not module.automatic_optimization
        _assert_identical(_state(module, trainer), want)


def test_rmtl_trains_exactly_as_single_batches(tmp_path: Path) -> None:
    df = generate(SyntheticConfig(rows=800, num_tasks=2, seed=4)).with_columns(session=(pl.int_range(pl.len()) // 5).cast(pl.Utf8))
    for name, part in (("train", df[:500]), ("valid", df[500:650]), ("test", df[650:])):
        part.write_parquet(tmp_path / f"{name}.parquet")
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml").model_dump(mode="json", exclude_defaults=True)
    spec["group_by"] = "session"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "rmtl", "spec": "spec.yaml", "model": {"name": "mmoe", "params": {}},
        "data": {"kind": "files", "train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet"},
        "rl": {"name": "rmtl", "params": {"session_column": "session", "gamma": 0.5, "weight_scale": 1.0}},
    }))
    prep = _prepared(tmp_path, pipeline=pipeline)
    want = _state(*_train(prep, 1))
    critics = []
    for k in (1, 3):
        module, trainer = _train(prep, k)
        assert module.automatic_optimization == (k == 1)
        held = module.critics.value
        critics.append([t.detach().clone() for part in (held.critic, held.critic_target, held.actor_target)
                        for t in part.state_dict().values()])
        _assert_identical(_state(module, trainer), want)
    assert all(torch.equal(a, b) for a, b in zip(*critics))  # the critics and targets step as with K = 1


def test_group_loader_yields_the_same_batches_rows_and_order() -> None:
    _, table = make_context(2, rows=300)
    for shuffle in (True, False):
        for limit in (None, 4):
            single = ColumnBatchLoader(table, 32, shuffle=shuffle, seed=3)
            grouped = GroupedLoader(ColumnBatchLoader(table, 32, shuffle=shuffle, seed=3), 4, limit)
            for epoch in range(2):  # the reshuffle of each epoch too
                want = list(single)[:limit]
                groups = list(grouped)
                assert len(groups) == len(grouped) == math.ceil(len(want) / 4)
                assert [len(g) for g in groups][:-1] == [4] * (len(groups) - 1)
                got = [b for g in groups for b in g]
                assert len(got) == len(want) and got[-1]["labels"].shape[0] == want[-1]["labels"].shape[0]
                for a, b in zip(got, want):
                    assert a.keys() == b.keys() and all(torch.equal(a[c], b[c]) for c in a)


def test_group_loader_groups_any_loader_as_it_yields() -> None:
    batches = [{"labels": torch.full((2, 1), float(i))} for i in range(7)]
    grouped = GroupedLoader(batches, 3)  # type: ignore[arg-type]  # a plain list: no iter_groups
    assert [[int(b["labels"][0, 0]) for b in g] for g in grouped] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(grouped) == 3 and len(GroupedLoader(batches, 3, limit=4)) == 2  # type: ignore[arg-type]
    assert [len(g) for g in GroupedLoader(batches, 3, limit=4)] == [3, 1]  # type: ignore[arg-type]


def _train_logs(path: Path) -> list[tuple[int, str]]:
    with (path / "metrics.csv").open() as f:
        return sorted((int(r["step"]), r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss"))


def test_logs_land_at_the_same_steps(tmp_path: Path) -> None:
    prep = _prepared(tmp_path, "trainer.log_every_n_steps=3")
    logs = []
    for k in (1, 4):
        logger = CSVLogger(tmp_path / f"logs{k}", name="", version="")
        module, trainer = _train(prep, k, epochs=2, logger=logger)
        logger.save()
        logs.append(_train_logs(Path(logger.log_dir)))
        assert trainer.fit_loop.epoch_loop._batches_that_stepped == 2 * BATCHES  # the loggers' step counts batches
        assert trainer.callbacks[0].rows == 2 * 420  # type: ignore[attr-defined]  # Throughput counts a group's rows
    assert [s for s, _ in logs[0]] == [2, 5, 8, 11] and logs[0] == logs[1]


class PoisonAfter(L.Callback):
    """Before optimizer step ``step``: every weight becomes inf, so the next step's loss is not finite."""

    def __init__(self, step: int):
        self.step = step

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.model.parameters():
                    p.fill_(math.inf)


def test_finite_guard_stops_at_the_same_step(tmp_path: Path) -> None:
    prep = _prepared(tmp_path)
    for k in (1, 4):
        with pytest.raises(NonFiniteLossError, match="not finite at step 3 "):
            _train(prep, k, callbacks=[PoisonAfter(2)])


def test_resume_from_a_checkpoint_between_epochs(tmp_path: Path) -> None:
    prep = _prepared(tmp_path, "trainer.gradient_clip_val=0.05")  # (a GCond window across epochs is not in checkpoints, whatever K)
    want = _state(*_train(prep, 4, epochs=2))
    _train(prep, 4, epochs=1, save=tmp_path / "last.ckpt")
    module, trainer = _train(prep, 4, epochs=2, ckpt=tmp_path / "last.ckpt")
    _assert_identical(_state(module, trainer), want)


def test_refused_with_ddp_val_check_interval_and_batch_readers(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", ["trainer.steps_per_execution=4", "trainer.val_check_interval=10"])
    with pytest.raises(SpecError, match="trainer.steps_per_execution: 4 .*val_check_interval"):
        check_trainer(cfg.trainer)
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", ["trainer.steps_per_execution=4", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"])
    with pytest.raises(SpecError, match="trainer.steps_per_execution: 4 needs a single training process; strategy DDPStrategy"):
        check_trainer(cfg.trainer)
    check_strategy(object(), 1)  # K = 1: any strategy
    with pytest.raises(SpecError, match="trainer.steps_per_execution: 2 is not supported with --engine ray"):
        ray_fit(load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", ["trainer.steps_per_execution=2"])[0], spec)
    prep = _prepared(tmp_path)
    with pytest.raises(SpecError, match="trainer.steps_per_execution: 2 .*DataMaps reads single training batches"):
        _train(prep, 2, callbacks=[DataMaps()])
    with pytest.raises(Exception, match="greater than or equal to 1"):
        load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", ["trainer.steps_per_execution=0"])


def test_a_streamed_training_split_trains_exactly_as_single_batches(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    for i in range(2):
        generate(SyntheticConfig(rows=250, seed=i)).write_parquet(tmp_path / "train" / f"part{i}.parquet")
    generate(SyntheticConfig(rows=200, seed=5)).write_parquet(tmp_path / "valid.parquet")
    generate(SyntheticConfig(rows=200, seed=6)).write_parquet(tmp_path / "test.parquet")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "stream", "spec": str(ROOT / "feature_specs" / "synthetic.yaml"), "model": {"name": "mmoe", "params": {}},
        "data": {"kind": "parquet_stream", "train": "train", "valid": "valid.parquet", "test": "test.parquet", "shuffle_buffer_rows": 200},
    }))
    prep = _prepared(tmp_path, "trainer.lr_schedule=cosine", pipeline=pipeline)
    want = _state(*_train(prep, 1, epochs=2))
    assert want["global_step"] == 2 * 8  # 500 rows / 64
    _assert_identical(_state(*_train(prep, 3, epochs=2)), want)
