"""DCN-v2 cross networks: a hand-computed 2-feature example, low-rank and mixture variants, as a
bottom under flat-input models and as MoE / PLE experts, exported with parity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from recsys_mtl.errors import SpecError
from recsys_mtl.export.exporter import parity
from recsys_mtl.models import build_model
from recsys_mtl.nn.encoder_config import EncoderConfig
from recsys_mtl.nn.cross_network import CrossConfig, CrossedEncoder, CrossExperts, CrossNetwork
from tests.support.synthetic import make_context, synthetic_spec
from tests.support.export import export_session, funnel_spec, held_out
from tests.support.model_checks import assert_gradients_reach_everything, feats


def test_full_rank_cross_matches_hand_computed_two_feature_example() -> None:
    net = CrossNetwork(2, CrossConfig(kind="full", num_layers=2))
    with torch.no_grad():
        net.layers[0].w.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net.layers[0].w.bias.copy_(torch.tensor([0.5, -1.0]))
        net.layers[1].w.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        net.layers[1].w.bias.copy_(torch.tensor([0.0, 0.0]))
    x0 = torch.tensor([[1.0, 2.0]])
    # layer 1: W x0 + b = [1+4+0.5, 3+8-1] = [5.5, 10]; x0 ⊙ that = [5.5, 20]; + x0 = [6.5, 22]
    # layer 2: W x1 = [22, 6.5]; x0 ⊙ that = [22, 13]; + x1 = [28.5, 35]
    torch.testing.assert_close(net(x0), torch.tensor([[28.5, 35.0]]))
    # the degree-2 term x0_1·x0_2 is explicit: doubling x0 quadruples the cross term
    one = CrossNetwork(2, CrossConfig(kind="full", num_layers=1))
    with torch.no_grad():
        one.layers[0].w.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        one.layers[0].w.bias.zero_()
    assert one(torch.tensor([[3.0, 5.0]])).tolist() == [[3.0 + 15.0, 5.0]]


def test_low_rank_and_mixture_follow_their_formulas() -> None:
    torch.manual_seed(0)
    x0 = torch.randn(5, 6)
    low = CrossNetwork(6, CrossConfig(kind="low_rank", num_layers=1, rank=2))
    layer = low.layers[0]
    u, v, b = layer.u.weight, layer.w.weight, layer.u.bias  # (6, 2), (2, 6), (6,)
    torch.testing.assert_close(low(x0), x0 * (x0 @ v.T @ u.T + b) + x0)
    assert sum(p.numel() for p in low.parameters()) == 6 * 2 * 2 + 6  # U, V, b: not D²

    mix = CrossNetwork(6, CrossConfig(kind="mixture", num_layers=1, rank=3, num_experts=2))
    m = mix.layers[0]
    with torch.no_grad():
        m.bias.uniform_(-1, 1)
    g = torch.softmax(x0 @ m.gate.weight.T, dim=-1)
    expected = x0.clone()
    for e in range(2):
        h = torch.tanh(torch.tanh(x0 @ m.v[e]) @ m.c[e]) @ m.u[e] + m.bias
        expected = expected + g[:, e : e + 1] * (x0 * h)
    torch.testing.assert_close(mix(x0), expected)


def test_cross_bottom_and_cross_experts_train_every_parameter() -> None:
    ctx, table = make_context(2, rows=300)
    for name, params in [
        ("mmoe", {"encoder.cross": {"kind": "low_rank", "rank": 4}}),
        ("shared_bottom", {"encoder.cross": {"kind": "full", "num_layers": 1}}),
        ("ple", {"expert_type": "cross", "expert_cross": {"kind": "mixture", "rank": 4, "num_experts": 2}}),
        ("mmoe", {"num_experts": 3, "expert_type": "cross"}),
    ]:
        torch.manual_seed(0)
        cross = params.pop("encoder.cross", None)
        model = build_model(name, params, replace(ctx, encoder=EncoderConfig(cross=cross)))
        if cross is not None:
            assert isinstance(model.encoder, CrossedEncoder)
        else:
            assert any(isinstance(m, CrossExperts) for m in model.modules())
        out = model(feats(table))
        assert all(torch.isfinite(v).all() for v in out.values())
        assert_gradients_reach_everything(model, table)


def test_cross_bottom_refused_by_token_models() -> None:
    ctx, _ = make_context(2, rows=200)
    with pytest.raises(SpecError, match="encoder.cross: model 'multitab' does not take it"):
        build_model("multitab", {}, replace(ctx, encoder=EncoderConfig(cross={"kind": "full"})))
    with pytest.raises(SpecError, match="expert_type"):
        build_model("mmoe", {"expert_type": "deep"}, ctx)


@pytest.mark.parametrize("name,params", [
    ("esmm", {"encoder.cross": {"kind": "mixture", "rank": 4, "num_experts": 2}}),
    ("ple", {"expert_type": "cross", "expert_cross": {"kind": "low_rank", "rank": 4}}),
])
@pytest.mark.slow
def test_cross_models_export_with_parity(name: str, params: dict) -> None:
    cross = params.pop("encoder.cross", None)
    head, session, pre = export_session(funnel_spec(synthetic_spec(2)), name, params, encoder={"cross": cross} if cross else None)
    diffs = parity(head, session, pre, held_out(300))
    assert max(diffs.values()) <= 1e-5, diffs
    assert np.isfinite(list(diffs.values())).all()
