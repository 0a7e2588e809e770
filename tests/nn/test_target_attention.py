"""DIN target attention: padding is ignored, the pooled vector follows the query, the spec wires
a query sharing the table, every model trains on it and the raw-column export keeps parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
from recsys_mtl.export.exporter import parity
from recsys_mtl.models import ModelContext, available_models, build_model
from recsys_mtl.nn.target_attention import TargetAttentionPooling
from recsys_mtl.spec import FeatureSpec, load_spec
from tests.support.export import export_session
from tests.support.model_checks import feats

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "feature_specs" / "sequence_synthetic.yaml")
DATA = generate_sequences(SequenceDataConfig(rows=600, users=80, items=120, categories=8, seed=3))


@pytest.mark.parametrize("softmax", [False, True])
def test_pooling_ignores_padding(softmax: bool) -> None:
    torch.manual_seed(0)
    pool = TargetAttentionPooling(4, (8,), softmax)
    query, keys = torch.randn(3, 4), torch.randn(3, 5, 4)
    idx = torch.tensor([[5, 6, 7, 0, 0], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = pool(query, keys, idx)
    garbage = keys.clone()
    garbage[idx == 0] = torch.randn(int((idx == 0).sum()), 4) * 100  # whatever padding embeds to
    torch.testing.assert_close(pool(query, garbage, idx), out)
    torch.testing.assert_close(out[2], torch.zeros(4))  # an empty history pools to 0
    w = pool.last_weights
    assert w is not None and bool((w[idx == 0] == 0).all())
    # the pooled vector is the weighted sum of the real elements
    torch.testing.assert_close(out[0], (w[0, :3, None] * keys[0, :3]).sum(0))
    if softmax:
        torch.testing.assert_close(w[:2].sum(-1), torch.ones(2))


def test_pooling_changes_with_the_query() -> None:
    torch.manual_seed(0)
    pool = TargetAttentionPooling(4, (8, 4))
    keys = torch.randn(1, 6, 4).expand(2, 6, 4)
    idx = torch.tensor([[1, 2, 3, 4, 0, 0]]).expand(2, 6)
    out = pool(torch.randn(2, 4), keys, idx)
    assert (out[0] - out[1]).abs().max() > 1e-3
    # and not merely rescaled: the weights over the same history differ in their ratios
    w = pool.last_weights
    assert w is not None
    assert not torch.allclose(w[0, :4] / w[0, :4].sum(), w[1, :4] / w[1, :4].sum(), atol=1e-4)


def test_spec_requires_a_categorical_query_on_the_same_table() -> None:
    raw = SPEC.model_dump(mode="json", exclude_defaults=True)
    raw["features"][0]["shared_table"] = "other"
    with pytest.raises(ValueError, match="share the sequence's embedding table"):
        FeatureSpec.model_validate(raw)
    raw = SPEC.model_dump(mode="json", exclude_defaults=True)
    raw["features"][1]["attention"]["query"] = "hour"
    with pytest.raises(ValueError, match="not a categorical feature"):
        FeatureSpec.model_validate(raw)
    raw = SPEC.model_dump(mode="json", exclude_defaults=True)
    raw["features"][1]["pooling"] = "mean"
    with pytest.raises(ValueError, match="go together"):
        FeatureSpec.model_validate(raw)


def _context() -> tuple[Preprocessor, ModelContext]:
    pre = Preprocessor.fit(SPEC, DATA)
    return pre, ModelContext(layout=pre.layout, tasks=SPEC.tasks)


@pytest.mark.parametrize("name", available_models())
def test_every_model_pools_history_by_the_candidate(name: str) -> None:
    pre, ctx = _context()
    params = {"inner": {"name": "mmoe"}} if name == "dtrn" else {}
    spec_tasks = ctx
    # funnel models need the second task declared as a stage after the first
    if name in ("esmm", "aitm"):
        raw = SPEC.model_dump(mode="json", exclude_defaults=True)
        raw["tasks"][1]["after"] = "click"
        spec = FeatureSpec.model_validate(raw)
        pre = Preprocessor.fit(spec, DATA)
        spec_tasks = ModelContext(layout=pre.layout, tasks=spec.tasks)
    torch.manual_seed(0)
    model = build_model(name, params, spec_tasks)
    table = pre.transform(DATA)
    units = [m for m in model.modules() if isinstance(m, TargetAttentionPooling)]
    assert units  # STEM holds one encoder per embedding set, so one unit each
    out = model(feats(table, slice(0, 64)))
    loss = sum(v.float().pow(2).mean() for v in out.values())
    loss.backward()  # type: ignore[union-attr]
    for unit in units:
        grad = unit.unit.mlp[0].weight.grad
        assert grad is not None and grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mmoe", "multitab"])
def test_raw_column_export_with_parity(name: str) -> None:
    head, session, pre = export_session(SPEC, name, {}, DATA)
    held = generate_sequences(SequenceDataConfig(rows=200, users=30, items=150, categories=8, seed=9))
    diffs = parity(head, session, pre, held)  # includes items unseen in train (OOV) in both places
    assert max(diffs.values()) <= 1e-5, diffs
