"""Balancer state that steers later steps survives a state_dict round trip (checkpoint/resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from tests.support.balancing_utils import linear_losses

PARAMS = {
    "coba": {"warmup_steps": 2, "history": 4},
    "gcond": {"accum_steps": 2},
    "dwa": {},
    "famo": {},
    "gradnorm": {},
    "uncertainty": {},
    "pcgrad": {},
    "db_mtl": {"beta": 0.5},  # the gradient moving average and its step count
    "nash_mtl": {"update_weights_every": 3, "max_norm": 0},  # α reused between solves
    "imtl": {},
}


def drive(balancer, steps: range) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Deterministic steps: varying losses and gradients, two steps per epoch."""
    out = []
    for s in steps:
        g = torch.Generator().manual_seed(s)
        G = torch.randn(2, 3, generator=g)
        losses, _, ctx = linear_losses(G, base=1.0 + 0.1 * s)
        losses = losses * torch.tensor([1.0, 0.5 + 0.3 * (s % 3)])  # tasks that move differently
        ctx.step, ctx.epoch = s, s // 2
        balancer(losses, ctx)
        if balancer.post_step is not None:
            balancer.after_step(torch.rand(2, generator=g) + 0.5, s)
        out.append(balancer.last_weights.clone())
    return out


@pytest.mark.parametrize("method", sorted(PARAMS))
def test_state_dict_round_trip_continues_identically(method: str) -> None:
    torch.manual_seed(0)
    a = build_balancer(method, PARAMS[method], ["a", "b"])
    if method == "uncertainty":
        with torch.no_grad():
            a.log_vars.copy_(torch.tensor([0.3, -0.7]))  # as if trained
    if method == "imtl":
        with torch.no_grad():
            a.log_scales.copy_(torch.tensor([0.2, -0.4]))  # as if trained
    if method == "coba":
        a.set_reference(torch.tensor([1.0, 2.0]))
    drive(a, range(7))
    b = build_balancer(method, PARAMS[method], ["a", "b"])
    b.load_state_dict(a.state_dict())
    torch.manual_seed(1)  # PCGrad's random order
    wa = drive(a, range(7, 12))
    torch.manual_seed(1)
    wb = drive(b, range(7, 12))
    for x, y in zip(wa, wb):
        torch.testing.assert_close(x, y)


@pytest.mark.slow
def test_coba_history_survives_a_lightning_checkpoint(tmp_path: Path) -> None:
    from recsys_mtl.balancing.coba import CoBa
    from tests.support.pipelines import short_fit

    metrics, _ = short_fit(tmp_path, "coba", "balancing.params={warmup_steps: 2, history: 4}")
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    fresh = build_balancer("coba", {"warmup_steps": 2, "history": 4}, ["task0", "task1"])
    assert isinstance(fresh, CoBa)
    fresh.load_state_dict({k[len("balancer."):]: v for k, v in state.items() if k.startswith("balancer.")})
    assert fresh.has_reference() and fresh.steps_seen > 2 and fresh.history.shape[0] == 4
    assert (fresh.last_weights - 1).abs().max() > 0
