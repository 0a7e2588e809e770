"""GBDT leaves with ``pooling: sum``: each task's (or each ``pool_trees`` run's) leaf embeddings
summed, in training and in eval, and export parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pydantic import ValidationError

from recsys_mtl.export import export_run
from recsys_mtl.nn.gbdt_leaves import GBDTLeaves, GBDTLeavesConfig
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.export import held_out

ROOT = Path(__file__).resolve().parents[2]


def test_sum_pooling_is_each_tasks_concatenated_leaf_vectors_summed() -> None:
    torch.manual_seed(0)
    cfg = dict(n_trees=5, num_leaves=7, d_embedding=3)
    concat = GBDTLeaves(4, 2, GBDTLeavesConfig(**cfg))
    summed = GBDTLeaves(4, 2, GBDTLeavesConfig(**cfg, pooling="sum"))
    summed.load_state_dict(concat.state_dict())  # same parameters and buffers: the choice is the pooling only
    assert summed.output_dim == 2 * 3 and concat.output_dim == 10 * 3
    leaves = torch.randint(0, 7, (9, 10))
    per_tree = concat.embed(leaves).view(9, 2, 5, 3)  # trees are stored task by task
    torch.testing.assert_close(summed.embed(leaves), per_tree.sum(2).reshape(9, 6))
    # a leaf vector moves the task whose tree holds it, and no other
    out = summed.embed(leaves)
    out[:, :3].sum().backward()
    touched = summed.embedding.weight.grad.abs().sum(1).nonzero().flatten()
    assert touched.numel() > 0 and bool((touched < 5 * 7).all())


@pytest.mark.parametrize("training", [True, False])
def test_pool_trees_sums_each_run_of_consecutive_trees(training: bool) -> None:
    torch.manual_seed(0)
    cfg = dict(n_trees=6, num_leaves=7, d_embedding=3)
    concat = GBDTLeaves(4, 2, GBDTLeavesConfig(**cfg))
    grouped = GBDTLeaves(4, 2, GBDTLeavesConfig(**cfg, pooling="sum", pool_trees=3))
    grouped.load_state_dict(concat.state_dict())
    grouped.train(training)  # training: the pooled_gather path; eval: the plain gather the exporter traces
    assert grouped.n_fields == 4 and grouped.output_dim == 4 * 3
    leaves = torch.randint(0, 7, (9, 12))
    per_tree = concat.embed(leaves).view(9, 4, 3, 3)  # 2 tasks × 2 runs of 3 trees
    out = grouped.embed(leaves)
    torch.testing.assert_close(out, per_tree.sum(2).reshape(9, 12))
    # the second run of task 0 (trees 3-5) moves only those trees' leaf vectors
    out[:, 3:6].sum().backward()
    touched = grouped.embedding.weight.grad.abs().sum(1).nonzero().flatten()
    assert touched.numel() > 0 and bool(((touched >= 3 * 7) & (touched < 6 * 7)).all())


@pytest.mark.parametrize("bad", [dict(pool_trees=4), dict(pool_trees=2, pooling="concat")])
def test_pool_trees_must_divide_n_trees_and_needs_sum(bad: dict) -> None:
    with pytest.raises(ValidationError, match="pool_trees"):
        GBDTLeavesConfig(**{"n_trees": 6, "pooling": "sum", **bad})


@pytest.mark.slow
@pytest.mark.parametrize("pool_trees", [None, 3])
def test_sum_pooled_leaves_fit_and_export_with_parity(tmp_path: Path, pool_trees: int | None) -> None:
    pytest.importorskip("lightgbm")
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        "encoder.gbdt_leaves={n_trees: 6, num_leaves: 8, max_depth: 4, min_data_in_leaf: 20, d_embedding: 6, pooling: sum}",
        f"encoder.gbdt_leaves.pool_trees={'null' if pool_trees is None else pool_trees}",
    ])
    run = fit(cfg, spec).run_dir
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert torch.isfinite(state["model.encoder.gbdt.threshold"]).any()
    meta = export_run(run, tmp_path / "export", test=held_out(300)).metadata
    assert meta["parity"]["max_abs_diff"] <= 1e-5
