"""dtrn: per-task SENet bottoms under any expert model that implements ``task_inputs``, and the
task-specific interest module over behaviour sequences."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.synthetic_sequences import SequenceDataConfig, generate_sequences
from recsys_mtl.errors import SpecError
from recsys_mtl.export.exporter import parity
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.nn.encoder_config import EncoderConfig
from recsys_mtl.nn.encoders import pool
from recsys_mtl.nn.interest import InterestConfig, TaskInterest
from recsys_mtl.spec import FeatureSpec, load_spec
from tests.support.synthetic import make_context, synthetic_spec
from tests.support.export import export_session
from tests.support.model_checks import feats

ROOT = Path(__file__).resolve().parents[2]

MMOE = {"inner": {"name": "mmoe", "params": {"num_experts": 3, "expert_hidden": [16]}}}


@pytest.mark.parametrize("inner", ["shared_bottom", "omoe", "mmoe", "ple"])
def test_wraps_expert_models(inner: str) -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("dtrn", {"inner": {"name": inner}}, ctx)
    assert model.encoder is model.inner.encoder  # one set of shared embeddings
    assert model(feats(table))["task1"].shape == (32,)


def test_task_k_uses_its_own_view() -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("dtrn", MMOE, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        before = model(batch)
        model.bottom.w2[1].normal_()  # change task 1's bottom only
        after = model(batch)
    torch.testing.assert_close(before["task0"], after["task0"], atol=0, rtol=0)
    assert not torch.allclose(before["task1"], after["task1"])


def test_refuses_models_without_task_inputs_and_bad_inner_params() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match="model.params.inner.name: 'multitab'"):
        build_model("dtrn", {"inner": {"name": "multitab"}}, ctx)
    with pytest.raises(SpecError, match="model.params.inner: .*num_experts"):
        build_model("dtrn", {"inner": {"name": "mmoe", "params": {"num_experts": 0}}}, ctx)



# --- the task-specific interest module (TIM) over behaviour sequences --------------------------

SEQ_SPEC = load_spec(ROOT / "feature_specs" / "sequence_synthetic.yaml")
SEQ_DATA = generate_sequences(SequenceDataConfig(rows=400, users=60, items=120, categories=8, seed=3))
TIM = MMOE | {"interest": {"hyper_hidden": [16], "ffn_hidden": 16, "num_heads": 2, "positions": True}}


def _seq_model(params: dict = TIM) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    pre = Preprocessor.fit(SEQ_SPEC, SEQ_DATA)
    torch.manual_seed(0)
    model = build_model("dtrn", params, ModelContext(layout=pre.layout, tasks=SEQ_SPEC.tasks)).eval()
    return model, feats(pre.transform(SEQ_DATA), slice(0, 48))


def test_each_task_gets_its_own_interest_vector() -> None:
    model, batch = _seq_model()
    norms = model.interest.hyper()  # (T, S, layers, 2, 2, d): generated, one set per task
    assert norms.shape == (2, 1, 1, 2, 2, 16)
    assert (norms[0] - norms[1]).abs().max() > 1e-4
    with torch.no_grad():
        views = model.interest_fields(batch)  # (T, B, D): item_id (16), history (16), hour and its indicator
    assert views.shape == (2, 48, model.encoder.output_dim) and model.encoder.field_dims[:2] == [16, 16]
    torch.testing.assert_close(views[0, :, :16], views[1, :, :16], atol=0, rtol=0)  # shared fields
    torch.testing.assert_close(views[0, :, 32:], views[1, :, 32:], atol=0, rtol=0)
    assert (views[0, :, 16:32] - views[1, :, 16:32]).abs().max() > 1e-4  # the interests differ
    # and they are what the tasks' SENet views and towers read: changing task 1's generated
    # parameters (its embedding) changes task 1's output only
    with torch.no_grad():
        before = model(batch)
        model.interest.hyper.task[1].normal_()
        after = model(batch)
    torch.testing.assert_close(before["click"], after["click"], atol=0, rtol=0)
    assert not torch.allclose(before["like"], after["like"])


def test_interest_ignores_padding() -> None:
    torch.manual_seed(0)
    tim = TaskInterest(8, 3, [6], InterestConfig(num_layers=2, num_heads=2, ffn_hidden=8, positions=True))
    torch.nn.init.normal_(tim.positions)  # they start at 0
    idx = torch.tensor([[4, 5, 6, 0, 0, 0], [7, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    emb = torch.randn(3, 6, 8)
    out = tim(emb, idx, 0)
    assert out.shape == (3, 3, 6, 8) and bool(torch.isfinite(out).all())  # (T, B, L, d)
    garbage = emb.clone()
    garbage[idx == 0] = torch.randn(int((idx == 0).sum()), 8) * 100
    changed = tim(garbage, idx, 0)
    real = (idx != 0)[None, :, :, None].expand_as(out)
    torch.testing.assert_close(changed[real], out[real])
    # so the pooled interest (here: masked mean) is unchanged, and an empty history pools to 0
    pooled = pool(out.flatten(0, 1), idx.repeat(3, 1), "mean")
    torch.testing.assert_close(pool(changed.flatten(0, 1), idx.repeat(3, 1), "mean"), pooled)
    torch.testing.assert_close(pooled.view(3, 3, 8)[:, 2], torch.zeros(3, 8))


def test_interest_follows_the_candidate_item() -> None:
    model, batch = _seq_model()
    other = dict(batch)
    other["categorical"] = batch["categorical"].roll(1, dims=0)  # same histories, other candidates
    with torch.no_grad():
        a, b = model.interest_fields(batch), model.interest_fields(other)
    moved = batch["categorical"][:, 0] != other["categorical"][:, 0]
    assert bool(moved.any())
    diff = (a[:, :, 16:32] - b[:, :, 16:32]).abs().amax(dim=(0, 2))  # (B,) history field
    assert bool((diff[moved] > 1e-5).all())
    torch.testing.assert_close(diff[~moved], torch.zeros(int((~moved).sum())))


@pytest.mark.parametrize("inner", ["shared_bottom", "mmoe", "ple"])
def test_interest_trains_under_inner_models(inner: str) -> None:
    model, batch = _seq_model({"inner": {"name": inner}, "interest": {}})
    model.train()
    model.bottom.w2.data.normal_()  # the SENet starts as the identity, which blocks W1's gradient
    loss = sum(v.pow(2).mean() for v in model(batch).values())
    loss.backward()  # type: ignore[union-attr]
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing
    ids = {id(p) for p in model.shared_parameters()}
    assert id(model.interest.hyper.task) not in ids and id(model.interest.layers[0].attn.qkv.weight) in ids


@pytest.mark.slow
def test_interest_exports_with_parity() -> None:
    head, session, pre = export_session(SEQ_SPEC, "dtrn", TIM, SEQ_DATA)
    held = generate_sequences(SequenceDataConfig(rows=200, users=30, items=150, categories=8, seed=9))
    diffs = parity(head, session, pre, held)  # unseen items (OOV) and histories of every length
    assert max(diffs.values()) <= 1e-5, diffs


def test_interest_refuses_specs_it_cannot_serve() -> None:
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["features"] = [f for f in raw["features"] if f["kind"] != "sequence"]
    spec = FeatureSpec.model_validate(raw)
    pre = Preprocessor.fit(spec, generate(SyntheticConfig(rows=200, num_tasks=2, seed=0)))
    with pytest.raises(SpecError, match="model.params.interest: the spec has no sequence features"):
        build_model("dtrn", TIM, ModelContext(layout=pre.layout, tasks=spec.tasks))
    raw = SEQ_SPEC.model_dump(mode="json", exclude_defaults=True)
    raw["features"].append({"name": "history8", "kind": "sequence", "embedding_dim": 8, "max_len": 30})
    spec = FeatureSpec.model_validate(raw)
    pre = Preprocessor.fit(spec, SEQ_DATA.with_columns(history8=SEQ_DATA["history"]))
    with pytest.raises(SpecError, match="model.params.interest: .*one embedding_dim"):
        build_model("dtrn", TIM, ModelContext(layout=pre.layout, tasks=spec.tasks))
    with pytest.raises(SpecError, match="model.params.interest: .*cross network"):
        build_model("dtrn", {"inner": {"name": "mmoe", "params": {}}, "interest": {}},
                    replace(_seq_model()[0].context, encoder=EncoderConfig(cross={})))
    with pytest.raises(SpecError, match="num_heads"):
        build_model("dtrn", MMOE | {"interest": {"num_heads": 3}}, _seq_model()[0].context)
