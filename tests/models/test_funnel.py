"""ESMM and AITM over funnels declared in the spec (``after``), on synthetic and Ali-CCP sample data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import SpecError
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.models.funnel import chain_logit
from recsys_mtl.spec import load_pipeline, load_spec
from recsys_mtl.train.fit import fit
from tests.support.paths import ROOT, SHARED_DATA
from tests.support.synthetic import make_context
from tests.support.model_checks import feats

ALICCP = SHARED_DATA / "ali-ccp"
FUNNELS = ["esmm", "aitm"]


def funnel_context(num_tasks: int, after: dict[int, int], rows: int = 64) -> tuple[ModelContext, object]:
    """make_context's data with task k declared ``after`` task after[k]."""
    ctx, table = make_context(num_tasks, rows=rows)
    tasks = [t.model_copy(update={"after": f"task{after[k]}"}) if k in after else t for k, t in enumerate(ctx.tasks)]
    return ModelContext(layout=ctx.layout, tasks=tasks), table


@pytest.mark.parametrize("name", FUNNELS)
def test_builds_on_two_funnels_and_a_lone_task(name: str) -> None:
    ctx, table = funnel_context(6, {1: 0, 2: 1, 4: 3})
    out = build_model(name, {}, ctx)(feats(table))
    assert list(out) == [f"task{k}" for k in range(6)]
    assert all(v.shape == (64,) and torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", FUNNELS)
def test_needs_a_funnel_in_the_spec(name: str) -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match="needs a funnel in the spec"):
        build_model(name, {}, ctx)


def test_chain_logit_is_the_product_of_probabilities() -> None:
    a = torch.tensor([-40.0, -5.0, 0.0, 3.0, 40.0, 40.0, -40.0]).double()
    b = torch.tensor([2.0, -7.0, 0.0, 1.0, 40.0, -40.0, 40.0]).double()
    z = chain_logit(a, b)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(torch.sigmoid(z), torch.sigmoid(a) * torch.sigmoid(b), atol=1e-15, rtol=1e-12)
    # and in log space, where the product underflows in float32
    logp = torch.nn.functional.logsigmoid(a) + torch.nn.functional.logsigmoid(b)
    torch.testing.assert_close(torch.nn.functional.logsigmoid(z), logp, atol=1e-12, rtol=1e-9)


def test_esmm_ctcvr_is_ctr_times_cvr() -> None:
    ctx, table = funnel_context(5, {1: 0, 2: 1, 4: 3})
    model = build_model("esmm", {}, ctx).eval()
    with torch.no_grad():
        joint = model(feats(table))
        own = model.conditional_logits(feats(table))
    p = {k: torch.sigmoid(v) for k, v in joint.items()}
    c = {k: torch.sigmoid(v) for k, v in own.items()}
    torch.testing.assert_close(p["task0"], c["task0"])
    torch.testing.assert_close(p["task1"], c["task0"] * c["task1"])
    torch.testing.assert_close(p["task2"], c["task0"] * c["task1"] * c["task2"])
    torch.testing.assert_close(p["task3"], c["task3"])
    torch.testing.assert_close(p["task4"], c["task3"] * c["task4"])
    assert bool((p["task2"] <= p["task1"] + 1e-7).all() and (p["task1"] <= p["task0"] + 1e-7).all())


def test_esmm_ctcvr_loss_trains_both_towers() -> None:
    """Entire-space training: the ctcvr loss alone reaches the ctr tower and the cvr tower."""
    ctx, table = funnel_context(2, {1: 0}, rows=128)
    model = build_model("esmm", {}, ctx)
    model(feats(table))["task1"].mean().backward()
    for tower in model.towers.towers:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


def test_aitm_calibrator_and_transfer() -> None:
    ctx, table = funnel_context(2, {1: 0}, rows=128)
    model = build_model("aitm", {"calibrator_weight": 0.5}, ctx)
    out = model(feats(table))
    expected = 0.5 * torch.relu(torch.sigmoid(out["task1"]) - torch.sigmoid(out["task0"])).mean()
    torch.testing.assert_close(model.auxiliary_loss(), expected)
    w = model.ait["task1"].last_weights
    assert w.shape == (128, 2) and torch.allclose(w.sum(-1), torch.ones(128))
    assert "task0" not in model.ait  # a first stage receives no transfer
    model.eval()
    model(feats(table))
    assert model.auxiliary_loss() is None  # a training-only loss
    off = build_model("aitm", {"calibrator_weight": 0.0}, ctx).train()
    off(feats(table))
    assert off.auxiliary_loss() is None  # α = 0 disables it
    # the previous stage's representation changes the next stage's output
    with torch.no_grad():
        before = model(feats(table))["task1"]
        model.bottoms[0][0].bias.add_(1.0)
        after = model(feats(table))
    assert not torch.allclose(before, after["task1"])


# ---------------------------------------------------------------------- Ali-CCP samples
@pytest.fixture
def aliccp_dir() -> Path:
    if not (ALICCP / "torch-rechub_ali_ccp_train_sample.csv").exists():
        pytest.skip(f"Ali-CCP samples not found at {ALICCP} (set RECSYS_MTL_SHARED_DATA)")
    return ALICCP


def test_aliccp_spec_reads_the_samples(aliccp_dir: Path) -> None:
    spec = load_spec(ROOT / "feature_specs" / "aliccp_sample.yaml")
    frames = {s: pl.read_csv(aliccp_dir / f"torch-rechub_ali_ccp_{s}_sample.csv") for s in ("train", "val", "test")}
    pre = Preprocessor.fit(spec, frames["train"])
    table = pre.transform(frames["test"])
    assert table.categorical.shape == (50, 23) and table.numeric.shape == (50, 8)
    assert float(table.labels[:, 1].sum()) == 1.0  # the test sample's one purchase, on a click
    ctx = ModelContext(layout=pre.layout, tasks=spec.tasks)
    for name in FUNNELS:
        out = build_model(name, {}, ctx).eval()(feats(table))
        assert set(out) == {"ctr", "ctcvr"} and all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.slow
def test_aliccp_end_to_end_fit(aliccp_dir: Path, tmp_path: Path) -> None:
    """A pipeline over the sample CSVs trains AITM through the Lightning module (calibrator included)."""
    pipeline = tmp_path / "aliccp_aitm.yaml"
    pipeline.write_text(
        f"""
name: aliccp_aitm
spec: {ROOT / 'feature_specs' / 'aliccp_sample.yaml'}
data:
  kind: files
  train: {aliccp_dir / 'torch-rechub_ali_ccp_train_sample.csv'}
  valid: {aliccp_dir / 'torch-rechub_ali_ccp_val_sample.csv'}
  test: {aliccp_dir / 'torch-rechub_ali_ccp_test_sample.csv'}
model: {{name: aitm, params: {{bottom_hidden: [16], tower_hidden: [8]}}}}
trainer: {{max_epochs: 2, batch_size: 32, progress_bar: false}}
runs_dir: {tmp_path / 'runs'}
"""
    )
    cfg, spec = load_pipeline(pipeline)
    metrics = fit(cfg, spec).metrics
    assert metrics["model"] == "aitm" and metrics["epochs_run"] >= 1
    assert 0.0 <= metrics["test"]["ctcvr/auc"] <= 1.0
