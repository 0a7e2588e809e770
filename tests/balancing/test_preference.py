"""The preference balancer: Σ p_t L_t, and COSMOS's cosine term by hand."""

from __future__ import annotations

import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def _ctx(pref: list[float]) -> StepContext:
    model = nn.Module()
    model.last_preference = torch.tensor(pref)  # type: ignore[assignment]
    return StepContext(step=0, epoch=0, model=model)


def test_cosmos_cosine_term_by_hand() -> None:
    losses = torch.tensor([2.0, 1.0], requires_grad=True)
    ctx = _ctx([0.25, 0.75])
    # Σ p L = 1.25; cos(p, L) = 1.25 / (√0.625·√5) = 1/√2
    plain = build_balancer("preference", {}, ["a", "b"])(losses, ctx)
    torch.testing.assert_close(plain, torch.tensor(1.25))
    cosmos = build_balancer("preference", {"cosine_weight": 2.0}, ["a", "b"])(losses, ctx)
    torch.testing.assert_close(cosmos, torch.tensor(1.25 - 2 * 2**-0.5))
    cosmos.backward()
    # ∂cos/∂L = p/(‖p‖‖L‖) − cos·L/‖L‖² = (−√2/10, √2/5); gradient p − 2·∂cos/∂L
    r = 2**0.5
    torch.testing.assert_close(losses.grad, torch.tensor([0.25 + r / 5, 0.75 - 2 * r / 5]))


def _rows_ctx(prefs: list[list[float]], rows: torch.Tensor, weights: torch.Tensor) -> StepContext:
    model = nn.Module()
    model.last_preference_rows = torch.tensor(prefs)  # type: ignore[assignment]
    model.last_preference = model.last_preference_rows.mean(0)  # type: ignore[assignment]
    return StepContext(step=0, epoch=0, model=model, rows=(rows, weights))


def test_per_row_preferences_by_hand() -> None:
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    weights = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # row 1 has no label for task b
    losses = (rows * weights).sum(0) / weights.sum(0)
    ctx = _rows_ctx([[0.5, 0.5], [0.1, 0.9]], rows, weights)
    total = build_balancer("preference", {}, ["a", "b"])(losses, ctx)
    # task a: (0.5·1 + 0.1·3) / 2 = 0.4; task b: 0.5·2 / 1 = 1.0
    torch.testing.assert_close(total, torch.tensor(1.4))
    total.backward()
    torch.testing.assert_close(rows.grad, torch.tensor([[0.25, 0.5], [0.05, 0.0]]))
    # the batch-mean preference (0.3, 0.7) would give 0.15 and 0.35 to the two rows' a and b losses
    assert not torch.allclose(rows.grad, torch.tensor([[0.15, 0.7], [0.15, 0.0]]))
    # cosine per ray: cos((.5,.5), (1,2)) = 1.5/(√0.5·√5); ray 2 labels task a only: cos((.1), (3)) = 1
    cosmos = build_balancer("preference", {"cosine_weight": 1.0}, ["a", "b"])(losses, ctx)
    torch.testing.assert_close(cosmos, torch.tensor(1.4 - (1.5 / (0.5**0.5 * 5**0.5) + 1.0) / 2))


def test_one_ray_with_rows_is_the_reference() -> None:
    """One ray for every row (the reference's draw): Σ p_t L_t − λ cos(p, L) on the batch means."""
    rows = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.5, 1.0]])
    weights = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    losses = (rows * weights).sum(0) / weights.sum(0)
    p = [0.25, 0.75]
    with_rows = build_balancer("preference", {"cosine_weight": 0.5}, ["a", "b"])(losses, _rows_ctx([p] * 3, rows, weights))
    reference = build_balancer("preference", {"cosine_weight": 0.5}, ["a", "b"])(losses, _ctx(p))
    torch.testing.assert_close(with_rows, reference)


def test_training_step_weighs_each_row_by_its_own_preference() -> None:
    """Through the training module: two rows with different preferences in one batch; the gradient
    is that of the per-row weighted loss computed by hand, not that of the batch-mean preference."""
    import torch.nn.functional as F

    from recsys_mtl.models import build_model
    from recsys_mtl.spec.pipeline import TrainerConfig
    from recsys_mtl.train.module import MultiTaskModule
    from tests.support.synthetic import make_context

    torch.manual_seed(0)
    context, table = make_context(2, rows=100)
    model = build_model("preference", {"base": "mmoe", "film_hidden": [4],
                                       "base_params": {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}}, context)
    module = MultiTaskModule(model, context.tasks, build_balancer("preference", {}, model.task_names), TrainerConfig())
    module.train()
    batch = {k: v[:2] for k, v in table.columns().items()}
    batch["weights"] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # row 1 unlabelled for task1
    prefs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    batch["preference"] = prefs

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True), params)]

    step = module.training_step(batch, 0)
    module.shared.remove()
    out = model(batch)  # the same forward by hand (no dropout: the same values)
    y = batch["labels"]
    bce = torch.stack([F.binary_cross_entropy_with_logits(out[f"task{k}"], y[:, k], reduction="none") for k in range(2)], 1)
    w = batch["weights"]
    by_hand = ((prefs * w * bce).sum(0) / w.sum(0)).sum()
    batch_mean = ((prefs.mean(0) * w * bce).sum(0) / w.sum(0)).sum()
    torch.testing.assert_close(step, by_hand)
    got = grads(step)
    for g, want in zip(got, grads(by_hand)):
        torch.testing.assert_close(g, want)
    assert not torch.allclose(step, batch_mean)
    assert any(not torch.allclose(g, m) for g, m in zip(got, grads(batch_mean)))  # the old collapse differs
