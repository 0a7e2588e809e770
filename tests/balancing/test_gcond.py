"""GCond: one update per window of accumulated batches; the arbitrator keeps the winner's gradient
in a critical conflict and projects the loser; remapped conflict angles; checkpointed state."""

from __future__ import annotations

import math

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.gcond import conflict_angle
from tests.support.balancing_utils import linear_losses


def test_conflict_angle_remapping() -> None:
    args = (-0.8, -0.5, 0.0, 2.0)
    assert conflict_angle(0.1, *args) == 0.0  # agreement: nothing to resolve
    assert conflict_angle(-0.5, *args) == pytest.approx(math.pi / 2)
    assert conflict_angle(-0.9, *args) == pytest.approx(math.pi)  # critical: the winner is untouched
    assert math.pi / 2 < conflict_angle(-0.65, *args) < math.pi


def test_critical_conflict_keeps_the_stronger_task_and_projects_the_other() -> None:
    g = torch.tensor([[3.0, 0.0], [-1.0, 0.1]])  # cos ≈ −0.995
    balancer = build_balancer("gcond", {"accum_steps": 1}, ["a", "b"])
    d = balancer.resolve(g)
    loser = g[1] - (g[0] @ g[1]) / (g[0] @ g[0]) * g[0]  # b projected off a: (0, 0.1)
    torch.testing.assert_close(d, g[0] + loser, atol=1e-5, rtol=1e-5)
    assert balancer.diagnostics()["conflict_rate"] == 1.0


def test_agreeing_tasks_are_summed() -> None:
    g = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    balancer = build_balancer("gcond", {"accum_steps": 1}, ["a", "b"])
    torch.testing.assert_close(balancer.resolve(g), g.sum(0))
    assert balancer.diagnostics()["conflict_rate"] == 0.0


def test_window_accumulates_batches_into_one_update() -> None:
    """Over a window of 4 batches the shared gradient (accumulated in .grad, as the training
    module does) is the resolution of the window's mean task gradients, and the optimizer is
    asked to step only on the last batch."""
    batches = [torch.tensor([[1.0, 0.0], [0.5, 1.0]]), torch.tensor([[1.0, 0.2], [-3.0, 0.2]])] * 2
    balancer = build_balancer("gcond", {"accum_steps": 4}, ["a", "b"])
    steps, zeroes = [], []
    grad = torch.zeros(2)
    for G in batches:
        steps.append(balancer.steps_optimizer())
        losses, p, ctx = linear_losses(G)
        out = balancer(losses, ctx)
        zeroes.append(balancer.zeroes_gradients())
        out.backward()
        grad += p.grad
    assert steps == [False, False, False, True] and zeroes == [True, False, False, False]
    mean = torch.stack(batches).mean(0)
    reference = build_balancer("gcond", {"accum_steps": 1}, ["a", "b"])
    torch.testing.assert_close(grad, reference.resolve(mean))


def test_state_survives_a_checkpoint() -> None:
    a = build_balancer("gcond", {"accum_steps": 2}, ["a", "b"])
    for G in [torch.tensor([[1.0, 0.0], [-1.0, 0.5]])] * 3:  # one full window + one batch
        losses, _, ctx = linear_losses(G)
        a(losses, ctx)
    b = build_balancer("gcond", {"accum_steps": 2}, ["a", "b"])
    b.load_state_dict(a.state_dict())
    assert int(b.count) == 1 and b.previous.numel() > 0
    G = torch.tensor([[0.2, 1.0], [-1.0, -0.3]])
    outs = []
    for balancer in (a, b):
        losses, p, ctx = linear_losses(G)
        balancer(losses, ctx).backward()
        outs.append(p.grad)
    torch.testing.assert_close(outs[0], outs[1])


def test_representation_space_is_refused() -> None:
    from recsys_mtl.errors import RecsysMTLError

    with pytest.raises((ValueError, RecsysMTLError)):
        build_balancer("gcond", {"on": "representation"}, ["a", "b"])


@pytest.mark.slow
def test_lightning_steps_the_optimizer_once_per_window(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Adam's own step counter (in the last checkpoint) counts real updates: one per 2 batches."""
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.fit import fit
    from tests.support.paths import ROOT

    steps = {}
    for method, params in [("equal", "{}"), ("gcond", "{accum_steps: 2}")]:
        cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
            "data.rows=800", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=128",
            "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / method}", f"balancing.name={method}",
            f"balancing.params={params}",
        ])
        run_dir = fit(cfg, spec).run_dir
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        steps[method] = int(next(iter(ckpt["optimizer_states"][0]["state"].values()))["step"])
    assert steps["equal"] >= 4 and steps["gcond"] == steps["equal"] // 2


def test_stability_reference_is_the_previous_windows_resolved_gradients() -> None:
    g = torch.tensor([[3.0, 0.0], [-1.0, 0.1]])  # critical conflict: b is projected off a
    balancer = build_balancer("gcond", {"accum_steps": 1}, ["a", "b"])
    d = balancer.resolve(g)
    resolved_b = g[1] - (g[0] @ g[1]) / (g[0] @ g[0]) * g[0]  # (0, 0.1), not the raw (−1, 0.1)
    torch.testing.assert_close(balancer.previous, torch.stack([g[0], resolved_b]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(balancer.previous.sum(0), d)
