"""GBDT leaf inputs: the tensor walk reaches LightGBM's own leaves; fitted in fit; exported with parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.gbdt_leaves import GBDTLeaves, GBDTLeavesConfig
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.synthetic import synthetic_spec
from tests.support.export import held_out

pytest.importorskip("lightgbm")
ROOT = Path(__file__).resolve().parents[2]


def test_tensor_walk_reaches_lightgbm_leaves(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks,
                                                  {"gbdt_leaves": {"n_trees": 7, "num_leaves": 15, "max_depth": 6, "min_data_in_leaf": 20}}))
    gbdt = model.encoder.gbdt
    assert isinstance(gbdt, GBDTLeaves) and gbdt.n_trees == 14
    x = model.encoder.gbdt_inputs({"categorical": table.categorical, "numeric": table.numeric})
    boosters = gbdt.fit(x.numpy(), table.labels.numpy(), table.weights.numpy(), ["binary", "binary"])
    expect = np.concatenate([b.predict(x.numpy(), pred_leaf=True) for b in boosters], axis=1)
    got = gbdt.leaves(x).numpy()
    assert (got == expect).all()
    assert len(np.unique(got[:, 0])) > 1  # real splits, not the unfitted single leaf


def test_unfitted_trees_send_every_row_to_leaf_zero() -> None:
    gbdt = GBDTLeaves(3, 1, GBDTLeavesConfig(n_trees=4, num_leaves=5))
    assert (gbdt.leaves(torch.randn(10, 3)) == 0).all()
    assert gbdt(torch.randn(10, 3)).shape == (10, 4 * 4)


@pytest.mark.slow
@pytest.mark.parametrize("stopping", ["", ", early_stopping_rounds: 3, learning_rate: 0.5, bagging_fraction: 0.8"])
def test_fit_fits_the_trees_and_export_keeps_parity(tmp_path: Path, stopping: str) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        # margin: the trees' scores join the logits, so parity covers both the leaf inputs and the sum
        "encoder.gbdt_leaves={n_trees: 40, num_leaves: 8, max_depth: 4, min_data_in_leaf: 20, margin: true" + stopping + "}",
    ])
    run = fit(cfg, spec).run_dir
    state = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert torch.isfinite(state["model.encoder.gbdt.threshold"]).any()  # fitted, and saved with the model
    assert state["model.encoder.gbdt.leaf_value"].abs().sum() > 0
    if stopping:  # stopped on validation before the cap, and the kept count travels with the checkpoint
        assert 0 < state["model.encoder.gbdt.fitted_trees"].max() < 40
    meta = export_run(run, tmp_path / "export", test=held_out(300)).metadata
    assert meta["parity"]["max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_early_stopping_keeps_the_best_validation_iteration(fitted) -> None:
    """Each task keeps the trees up to the iteration of best validation AUC; the slots after it are
    constant trees with value 0, so the margin is LightGBM's raw score at that iteration."""
    from torchmetrics.functional.classification import binary_auroc

    pre, table = fitted
    cap = 150
    trees = {"n_trees": cap, "num_leaves": 15, "max_depth": 6, "min_data_in_leaf": 20, "learning_rate": 0.2, "margin": True}
    model = build_model("mmoe", {}, model_context(pre.layout, synthetic_spec(2).tasks, {"gbdt_leaves": {**trees, "early_stopping_rounds": 5}}))
    gbdt = model.encoder.gbdt
    rows = model.encoder.gbdt_inputs({"categorical": table.categorical, "numeric": table.numeric}).numpy()
    labels, weights = table.labels.numpy(), table.weights.numpy()
    x, y, w, vx, vy, vw = rows[:2000], labels[:2000], weights[:2000], rows[2000:], labels[2000:], weights[2000:]
    gbdt.fit(x, y, w, ["binary", "binary"], (vx, vy, vw))
    # the same trees boosted to the cap without stopping: the validation curve the choice was made on
    full = GBDTLeaves(x.shape[1], 2, GBDTLeavesConfig(**trees)).fit(x, y, w, ["binary", "binary"])
    leaves = gbdt.leaves(torch.as_tensor(vx))
    for k, booster in enumerate(full):
        kept = int(gbdt.fitted_trees[k])
        target = torch.as_tensor(vy[:, k]).long()
        assert 1 < kept < cap - 5
        # the curve up to the last round seen before stopping (the later rounds cannot change the choice)
        aucs = np.array([float(binary_auroc(torch.as_tensor(booster.predict(vx, raw_score=True, num_iteration=j)), target))
                         for j in range(1, kept + 5 + 1)])
        # the first best of the rounds seen before stopping, and 5 rounds without improvement after it
        assert kept == int(np.argmax(aucs[:kept + 5])) + 1
        np.testing.assert_allclose(gbdt.margins(leaves)[:, k].numpy(), booster.predict(vx, raw_score=True, num_iteration=kept), atol=1e-4)
        assert (leaves[:, k * cap + kept:(k + 1) * cap] == 0).all()  # the unused slots: one leaf
    with pytest.raises(SpecError, match="early_stopping_rounds: needs the validation split"):
        gbdt.fit(x, y, w, ["binary", "binary"])


def _margin_model(pre, name: str = "mmoe"):  # type: ignore[no-untyped-def]
    spec = synthetic_spec(2)
    encoder = {"gbdt_leaves": {"n_trees": 6, "num_leaves": 15, "max_depth": 6, "min_data_in_leaf": 20, "margin": True}}
    return build_model(name, {}, model_context(pre.layout, spec.tasks, encoder))


def test_margin_is_lightgbm_raw_score(fitted) -> None:
    pre, table = fitted
    gbdt = _margin_model(pre).encoder.gbdt
    x = torch.cat([table.categorical.to(table.numeric.dtype), table.numeric], dim=-1)
    boosters = gbdt.fit(x.numpy(), table.labels.numpy(), table.weights.numpy(), ["binary", "binary"])
    expect = np.stack([b.predict(x.numpy(), raw_score=True) for b in boosters], axis=1)  # initial score included
    np.testing.assert_allclose(gbdt.margins(gbdt.leaves(x)).numpy(), expect, atol=1e-4)
    assert expect.std(axis=0).min() > 0.1


def test_margin_is_added_to_each_binary_logit(fitted) -> None:
    pre, table = fitted
    torch.manual_seed(0)
    model = _margin_model(pre).eval()
    model.fit_inputs(table)
    batch = features_only(slice_batch(table.columns(), 0, 64))
    margins = model.encoder.gbdt.margins(model.encoder.gbdt.leaves(model.encoder.gbdt_inputs(batch)))
    with torch.no_grad():
        for tower in model.towers.towers:  # silence the network: the logits are the trees' scores alone
            tower[-1].weight.zero_()
            tower[-1].bias.zero_()
        logits = model(batch)
    torch.testing.assert_close(torch.stack([logits["task0"], logits["task1"]], dim=1), margins)


def test_margin_is_refused_by_a_family_with_its_own_forward(fitted) -> None:
    pre, _ = fitted
    with pytest.raises(SpecError, match="encoder.gbdt_leaves.margin: 'stem'"):
        _margin_model(pre, "stem")
