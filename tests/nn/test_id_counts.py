"""Id popularity inputs: each selected id's scaled log train count, 0 for unseen; exported with parity."""

from __future__ import annotations

import math
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
from tests.support.export import held_out, make_run


def test_inputs_are_scaled_log_counts_after_the_numeric_block(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    plain = build_model("mmoe", {}, model_context(pre.layout, spec.tasks))
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_counts": {"features": ["cat0"]}}))
    assert model.encoder.output_dim == plain.encoder.output_dim + 1
    col = [f for f, _ in pre.layout.categorical].index("cat0")
    cat = table.categorical[:6].clone()
    cat[:3, col] = torch.tensor([MISSING, OOV, FIRST])
    batch = {"categorical": cat, "numeric": table.numeric[:6], **{f"seq.{k}": v[:6] for k, v in table.sequences.items()}}
    parts, _ = model.encoder.eval().fields(batch)
    counts = pre.tables["cat0"].counts
    got = parts[-1][:, 0]
    want = [0.0, 0.0, 1.0] + [math.log1p(counts[i - FIRST]) / math.log1p(max(counts)) for i in cat[3:, col].tolist()]
    torch.testing.assert_close(got, torch.tensor(want))
    with pytest.raises(SpecError, match="encoder.id_counts.features"):
        build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_counts": {"features": ["num1"]}}))


@pytest.mark.slow
def test_onnx_export_parity_with_id_counts(tmp_path: Path) -> None:
    spec = synthetic_spec(2)
    train = generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1))
    run = make_run(tmp_path, spec, train, "mmoe", {}, encoder={"id_counts": {"min_vocab": 10}})
    meta = export_run(run, tmp_path / "export", test=held_out(200)).metadata  # unseen and missing ids inside
    assert meta["parity"]["max_abs_diff"] <= 1e-5
