"""GBDT leaves computed once per split: the same leaves as the walk, aligned with shuffled rows,
the same logits, and carried by the training loaders of a fit (the step no longer walks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.gbdt_leaves import LEAVES_KEY
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from recsys_mtl.train.precomputed import precomputed_columns
from tests.support.synthetic import synthetic_spec

pytest.importorskip("lightgbm")
ROOT = Path(__file__).resolve().parents[2]
GBDT = {"n_trees": 6, "num_leaves": 15, "max_depth": 6, "min_data_in_leaf": 20}


def _fitted_model(pre, table, name: str = "mmoe", margin: bool = False):  # type: ignore[no-untyped-def]
    spec = synthetic_spec(2)
    model = build_model(name, {}, model_context(pre.layout, spec.tasks, {"gbdt_leaves": {**GBDT, "margin": margin}}))
    model.fit_inputs(table)
    return model.eval()


def test_precomputed_leaves_are_the_walk_in_chunks(fitted) -> None:
    pre, table = fitted
    model = _fitted_model(pre, table)
    leaves = precomputed_columns(model, table, chunk_rows=97)[LEAVES_KEY]  # chunks that do not divide N
    enc = model.encoder
    walked = enc.gbdt.leaves(enc.gbdt_inputs({"categorical": table.categorical, "numeric": table.numeric}))
    assert leaves.dtype == torch.int16 and leaves.shape == (len(table), 12)
    assert torch.equal(leaves.long(), walked)
    assert len(walked[:, 0].unique()) > 1  # fitted trees, not the unfitted single leaf


@pytest.mark.parametrize(("name", "margin"), [("mmoe", True), ("stem", False)])
def test_logits_with_the_column_equal_the_walk(fitted, name: str, margin: bool) -> None:
    pre, table = fitted
    torch.manual_seed(0)
    model = _fitted_model(pre, table, name, margin)  # stem: one encoder (and tree copy) per task
    extra = precomputed_columns(model, table)
    assert LEAVES_KEY in extra
    batch = features_only(slice_batch(table.columns(), 0, 50))
    with torch.no_grad():
        walked = model(batch)
        given = model({**batch, LEAVES_KEY: extra[LEAVES_KEY][:50]})
    for task in walked:
        torch.testing.assert_close(given[task], walked[task], rtol=0, atol=0)


def test_without_gbdt_nothing_is_precomputed(fitted) -> None:
    pre, table = fitted
    model = build_model("mmoe", {}, ModelContext(layout=pre.layout, tasks=synthetic_spec(2).tasks))
    assert precomputed_columns(model, table) == {}


def test_shuffled_loader_keeps_leaves_on_their_rows(fitted) -> None:
    pre, table = fitted
    model = _fitted_model(pre, table)
    loader = ColumnBatchLoader(table, 64, shuffle=True, seed=3, extra=precomputed_columns(model, table))
    for batch in loader:
        assert torch.equal(batch[LEAVES_KEY].long(), model.encoder.gbdt.leaves(model.encoder.gbdt_inputs(batch)))
    with pytest.raises(ValueError, match="extra column 'x' has 3 rows"):
        ColumnBatchLoader(table, 64, extra={"x": torch.zeros(3)})


class _SeenKeys(L.Callback):
    def __init__(self) -> None:
        self.train: set[bool] = set()
        self.val: set[bool] = set()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.train.add(LEAVES_KEY in batch)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.val.add(LEAVES_KEY in batch)


@pytest.mark.slow
def test_fit_feeds_precomputed_leaves_to_the_step(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1200", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        "encoder.gbdt_leaves={n_trees: 4, num_leaves: 8, max_depth: 4, min_data_in_leaf: 20, margin: true}",
    ])
    seen = _SeenKeys()
    fit(cfg, spec, extra_callbacks=[seen])
    assert seen.train == {True} and seen.val == {True}
