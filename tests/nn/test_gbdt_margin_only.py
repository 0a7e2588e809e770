"""GBDT trees with ``pooling: none``: only the trees' score in the logit (no leaf inputs), the
score precomputed for the step, and the exported graph walking the trees with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from pydantic import ValidationError

from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.gbdt_leaves import LEAVES_KEY, MARGINS_KEY, GBDTLeaves, GBDTLeavesConfig
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from recsys_mtl.train.precomputed import precomputed_columns
from tests.support.export import held_out
from tests.support.synthetic import synthetic_spec

pytest.importorskip("lightgbm")
ROOT = Path(__file__).resolve().parents[2]
TREES = {"n_trees": 6, "num_leaves": 15, "max_depth": 6, "min_data_in_leaf": 20, "margin": True}


def _model(pre, table, gbdt: dict[str, Any] | None, fit_trees: bool = True):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model("mmoe", {}, model_context(pre.layout, synthetic_spec(2).tasks, {"gbdt_leaves": gbdt} if gbdt else {}))
    if fit_trees and gbdt:
        model.fit_inputs(table)
    return model.eval()


@pytest.mark.parametrize(("bad", "match"), [
    ({"pooling": "none"}, "gbdt_leaves.pooling: none .* needs gbdt_leaves.margin: true"),
    ({"pooling": "none", "margin": True, "pool_trees": 2}, "pool_trees needs pooling: sum"),
])
def test_pooling_none_needs_margin(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        GBDTLeavesConfig(n_trees=4, **bad)


def test_no_leaf_embedding_exists(fitted) -> None:
    pre, table = fitted
    only = _model(pre, table, {**TREES, "pooling": "none"}, fit_trees=False)
    plain = _model(pre, table, None)
    gbdt = only.encoder.gbdt
    assert isinstance(gbdt, GBDTLeaves) and gbdt.n_fields == 0 and gbdt.output_dim == 0
    assert not hasattr(gbdt, "embedding")
    assert not [n for n, _ in only.named_parameters() if "gbdt" in n]
    # the network is the plain one: same parameters, same input width
    assert only.encoder.output_dim == plain.encoder.output_dim
    assert [(n, p.shape) for n, p in only.named_parameters()] == [(n, p.shape) for n, p in plain.named_parameters()]
    assert {k for k in gbdt.state_dict()} == {"feature", "threshold", "left", "right", "leaf_value"}
    with pytest.raises(RuntimeError, match="pooling: none has no leaf embeddings"):
        gbdt.embed(torch.zeros(2, gbdt.n_trees, dtype=torch.long))


def test_existing_configs_keep_their_state_dict_keys() -> None:
    """Checkpoints of the leaf-input modes load as before: the same buffers and table."""
    cfg = dict(n_trees=3, num_leaves=5, d_embedding=2, margin=True)
    for pooling in ("concat", "sum"):
        keys = set(GBDTLeaves(4, 2, GBDTLeavesConfig(**cfg, pooling=pooling)).state_dict())
        assert keys == {"feature", "threshold", "left", "right", "leaf_value", "embedding.weight"}


def test_logit_is_the_plain_network_logit_plus_the_trees_score(fitted) -> None:
    pre, table = fitted
    only = _model(pre, table, {**TREES, "pooling": "none"})
    plain = _model(pre, table, None)
    network = {k: v for k, v in only.state_dict().items() if ".gbdt." not in k}
    plain.load_state_dict(network)  # strict: the margin-only network has exactly the plain one's state
    batch = features_only(slice_batch(table.columns(), 0, 64))
    gbdt = only.encoder.gbdt
    margins = gbdt.margins(gbdt.leaves(only.encoder.gbdt_inputs(batch)))  # (64, 2)
    assert margins.std(0).min() > 0.1  # fitted trees, not a constant
    with torch.no_grad():
        got, net = only(batch), plain(batch)
    for j, task in enumerate(("task0", "task1")):
        torch.testing.assert_close(got[task], net[task] + margins[:, j])


def test_step_reads_the_precomputed_score_without_leaves(fitted) -> None:
    pre, table = fitted
    only = _model(pre, table, {**TREES, "pooling": "none"})
    extra = precomputed_columns(only, table, chunk_rows=97)
    assert set(extra) == {MARGINS_KEY}  # no (N, T) leaves carried: the step never needs them
    gbdt = only.encoder.gbdt
    walked = gbdt.margins(gbdt.leaves(only.encoder.gbdt_inputs({"categorical": table.categorical, "numeric": table.numeric})))
    assert extra[MARGINS_KEY].shape == (len(table), 2)
    torch.testing.assert_close(extra[MARGINS_KEY], walked, rtol=0, atol=0)
    batch = features_only(slice_batch(table.columns(), 0, 50))
    with torch.no_grad():
        from_walk = only(batch)
        from_column = only({**batch, MARGINS_KEY: extra[MARGINS_KEY][:50]})
        # the column is what the step uses: a shifted column shifts the logits by exactly that
        shifted = only({**batch, MARGINS_KEY: extra[MARGINS_KEY][:50] + 1.0})
    for task in from_walk:
        torch.testing.assert_close(from_column[task], from_walk[task], rtol=0, atol=0)
        torch.testing.assert_close(shifted[task], from_walk[task] + 1.0)


def test_leaf_inputs_with_margin_carry_both_columns(fitted) -> None:
    pre, table = fitted
    model = _model(pre, table, {**TREES, "d_embedding": 2})
    extra = precomputed_columns(model, table)
    assert set(extra) == {LEAVES_KEY, MARGINS_KEY}
    batch = features_only(slice_batch(table.columns(), 0, 50))
    with torch.no_grad():
        walked, given = model(batch), model({**batch, **{k: v[:50] for k, v in extra.items()}})
    for task in walked:
        torch.testing.assert_close(given[task], walked[task], rtol=0, atol=0)


class _SeenKeys(L.Callback):
    def __init__(self) -> None:
        self.train: set[tuple[bool, bool]] = set()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.train.add((LEAVES_KEY in batch, MARGINS_KEY in batch))


@pytest.mark.slow
def test_fit_feeds_the_score_and_export_walks_the_trees_with_parity(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        "encoder.gbdt_leaves={n_trees: 40, num_leaves: 8, max_depth: 4, min_data_in_leaf: 20, margin: true, pooling: none}",
    ])
    seen = _SeenKeys()
    run = fit(cfg, spec, extra_callbacks=[seen]).run_dir
    assert seen.train == {(False, True)}  # the step reads the precomputed score, no leaves, no walk
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert state["model.encoder.gbdt.leaf_value"].abs().sum() > 0
    assert not [k for k in state if "gbdt.embedding" in k]
    meta = export_run(run, tmp_path / "export", test=held_out(300)).metadata
    assert meta["parity"]["max_abs_diff"] <= 1e-5
