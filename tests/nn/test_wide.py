"""The wide part: a scalar per id and task added to the logits, 0 for unseen and missing ids,
shrunk by the rarity-aware L2, exported with parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_mtl.features.fitted import FIRST, MISSING, OOV
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from tests.support.synthetic import synthetic_spec
from tests.support.export import funnel_spec, held_out, make_run


def _batch(table, rows: int = 32) -> dict[str, torch.Tensor]:
    return {"categorical": table.categorical[:rows], "numeric": table.numeric[:rows],
            **{f"seq.{k}": v[:rows] for k, v in table.sequences.items()}}


def test_adds_each_ids_scalar_to_its_tasks_logit_and_nothing_for_unseen(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    base_ctx = model_context(pre.layout, spec.tasks)
    wide_ctx = model_context(pre.layout, spec.tasks, {"wide": {"features": ["cat0"]}})
    torch.manual_seed(0)
    plain = build_model("mmoe", {}, base_ctx).eval()
    torch.manual_seed(0)
    model = build_model("mmoe", {}, wide_ctx).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    weight = model.wide.scalars["cat0"].weight
    with torch.no_grad():
        weight.copy_(torch.randn_like(weight))
    batch = _batch(table)
    col = [f for f, _ in pre.layout.categorical].index("cat0")
    batch["categorical"] = batch["categorical"].clone()
    batch["categorical"][:4, col] = torch.tensor([OOV, MISSING, FIRST, FIRST + 1])
    a, b = plain(batch), model(batch)
    ids = batch["categorical"][:, col]
    for t, name in enumerate(["task0", "task1"]):
        expected = torch.where(ids >= FIRST, weight[ids, t], torch.zeros(()))
        torch.testing.assert_close(b[name] - a[name], expected.detach())
    assert (b["task0"][:2] == a["task0"][:2]).all()  # OOV and missing add exactly 0


def test_shrinkage_scales_with_rarity_and_skips_oov(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"wide": {"features": ["cat0"], "l2": 0.1}}))
    weight = model.wide.scalars["cat0"].weight
    with torch.no_grad():
        weight.fill_(1.0)
    batch = _batch(table, 50)
    model.regularization(batch).backward()
    counts = pre.tables["cat0"].counts
    col = [f for f, _ in pre.layout.categorical].index("cat0")
    used = set(batch["categorical"][:, col].tolist())
    for r in range(weight.shape[0]):
        want = 2 * 0.1 / counts[r - FIRST] if r in used and r >= FIRST else 0.0
        torch.testing.assert_close(weight.grad[r], torch.full((2,), want))


def test_default_features_by_table_size_and_refusals(fitted) -> None:
    pre, _ = fitted
    spec = synthetic_spec(2)
    sizes = {f: pre.layout.tables[t][0] for f, t in pre.layout.categorical}
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"wide": {"min_vocab": 20}}))
    assert model.wide.features == [f for f, n in sizes.items() if n >= 20]
    with pytest.raises(SpecError, match="encoder.wide: no categorical feature"):
        build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"wide": {"min_vocab": 10**9}}))
    # the shape-only layout of `validate` (2-bucket hashes, no counts) builds with no column
    from recsys_mtl.train.pipeline_checks import shape_only_preprocessor
    shape_only = build_model("mmoe", {}, model_context(shape_only_preprocessor(spec).layout, spec.tasks, {"wide": {}}))
    assert shape_only.wide.features == []
    with pytest.raises(SpecError, match="encoder.wide: model 'stem' does not take it"):
        build_model("stem", {}, model_context(pre.layout, spec.tasks, {"wide": {}}))
    with pytest.raises(SpecError, match="encoder.wide: 'esmm' has its own forward"):  # flat, but its own forward
        build_model("esmm", {}, model_context(pre.layout, funnel_spec(spec).tasks, {"wide": {}}))
    with pytest.raises(SpecError, match="encoder.wide: model 'multitab' does not take it"):
        build_model("multitab", {}, model_context(pre.layout, spec.tasks, {"wide": {}}))


@pytest.mark.slow
def test_onnx_export_parity_with_wide_part(tmp_path: Path) -> None:
    spec = synthetic_spec(2)
    train = generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1))
    encoder = {"wide": {"min_vocab": 10}, "id_regularization": {"l2": 0.01}}
    run = make_run(tmp_path, spec, train, "mmoe", {}, encoder=encoder)
    meta = export_run(run, tmp_path / "export", test=held_out(200)).metadata  # OOV and missing ids inside
    assert meta["parity"]["max_abs_diff"] <= 1e-5
