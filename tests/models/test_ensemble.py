"""The in-graph seed ensemble: logits averaged over members, one tree fit shared, one ONNX graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.synthetic import synthetic_spec
from tests.support.export import held_out

ROOT = Path(__file__).resolve().parents[2]
BASE = {"num_experts": 3, "expert_hidden": [16], "tower_hidden": [8]}


def test_logits_are_the_members_mean_and_members_differ(fitted) -> None:
    pre, table = fitted
    torch.manual_seed(0)
    model = build_model("ensemble", {"base": "mmoe", "base_params": BASE, "members": 3},
                        model_context(pre.layout, synthetic_spec(2).tasks)).eval()
    batch = features_only(slice_batch(table.columns(), 0, 50))
    with torch.no_grad():
        out = model(batch)
        each = [m(batch) for m in model.members]
    for task in ("task0", "task1"):
        torch.testing.assert_close(out[task], torch.stack([e[task] for e in each]).mean(0))
        assert (each[0][task] - each[1][task]).abs().max() > 1e-3  # different initialisations
    assert model.towers is model.members[0].towers


def test_members_share_one_tree_fit_and_add_the_margin(fitted) -> None:
    pytest.importorskip("lightgbm")
    pre, table = fitted
    encoder = {"gbdt_leaves": {"n_trees": 5, "num_leaves": 8, "max_depth": 4, "min_data_in_leaf": 20, "margin": True}}
    model = build_model("ensemble", {"base": "mmoe", "base_params": BASE, "members": 2},
                        model_context(pre.layout, synthetic_spec(2).tasks, encoder)).eval()
    model.fit_inputs(table)
    first, second = (m.encoder.gbdt for m in model.members)
    assert first.same_trees(second) and torch.equal(first.leaf_value, second.leaf_value)
    batch = features_only(slice_batch(table.columns(), 0, 64))
    margins = first.margins(first.leaves(model.members[0].encoder.gbdt_inputs(batch)))
    with torch.no_grad():
        for member in model.members:  # silence every network: the ensemble is the trees alone
            for tower in member.towers.towers:
                tower[-1].weight.zero_()
                tower[-1].bias.zero_()
        out = model(batch)
    torch.testing.assert_close(torch.stack([out["task0"], out["task1"]], dim=1), margins)


def test_base_must_be_a_flat_input_family(fitted) -> None:
    pre, _ = fitted
    ctx = model_context(pre.layout, synthetic_spec(2).tasks)
    with pytest.raises(SpecError, match="model.params.base: 'multitab' is not a flat-input family"):
        build_model("ensemble", {"base": "multitab"}, ctx)
    with pytest.raises(SpecError, match="model.params.base: 'ensemble'"):
        build_model("ensemble", {"base": "ensemble"}, ctx)


@pytest.mark.slow
def test_fit_and_export_of_an_ensemble_on_early_stopped_trees_keep_parity(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        "model.name=ensemble", "model.params={base: mmoe, base_params: {num_experts: 2, expert_hidden: [16]}, members: 2}",
        "encoder.gbdt_leaves={n_trees: 30, num_leaves: 8, max_depth: 4, min_data_in_leaf: 20, learning_rate: 0.5, "
        "early_stopping_rounds: 3, margin: true}",
    ])
    run = fit(cfg, spec).run_dir
    meta = export_run(run, tmp_path / "export", test=held_out(300)).metadata
    assert meta["parity"]["max_abs_diff"] <= 1e-5
