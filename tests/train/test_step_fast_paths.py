"""The training step's fast paths equal what they replace: one (B, T) BCE for all-BCE tasks, the
finite check on one scalar, the model's encoders found once per phase."""

from __future__ import annotations

import math

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.models import build_model
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.finite_guard import nonfinite_total
from recsys_mtl.train.module import MultiTaskModule
from tests.support.synthetic import make_context


def _module(num_tasks: int = 3) -> tuple[MultiTaskModule, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    context, table = make_context(num_tasks, rows=200)
    model = build_model("mmoe", {"num_experts": 3, "expert_hidden": [8], "tower_hidden": [4]}, context)
    module = MultiTaskModule(model, context.tasks, build_balancer("equal", {}, model.task_names), TrainerConfig())
    batch = {k: v[:64] for k, v in table.columns().items()}
    batch["weights"] = torch.rand_like(batch["weights"]).round()  # masked rows too
    return module, batch


def test_one_bce_over_all_tasks_equals_the_per_task_losses() -> None:
    module, batch = _module()
    module.task_weights = torch.tensor([1.0, 0.5, 2.0])
    assert module.one_bce
    logits = module(batch)
    rows, weights = module.step_rows(logits, batch)
    want = torch.stack(module._row_losses(logits, batch), dim=1) * module.task_weights
    assert rows.shape == (64, 3) and weights is batch["weights"]
    torch.testing.assert_close(rows, want)
    params = [p for p in module.parameters() if p.requires_grad]
    got_grads = torch.autograd.grad(rows.sum(), params, retain_graph=True)
    want_grads = torch.autograd.grad(want.sum(), params)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w)


def test_a_non_bce_task_keeps_the_per_task_losses() -> None:
    module, _ = _module()
    tasks = [t.model_copy(update={"loss": "mse"}) if i == 1 else t for i, t in enumerate(module.tasks)]
    assert not MultiTaskModule(module.model, tasks, module.balancer, TrainerConfig()).one_bce


@pytest.mark.parametrize("values", [[0.3, 0.2], [float("nan"), 0.2], [0.1, float("inf")], [float("-inf"), 1.0],
                                    [float("inf"), float("-inf")], [3e38, 3e38]])
def test_one_scalar_read_flags_what_the_per_task_check_flagged(values: list[float]) -> None:
    losses = torch.tensor(values)
    total = losses.sum()
    per_task = not all(math.isfinite(v) for v in [*losses.tolist(), float(total)])
    assert nonfinite_total(total) == per_task


def test_encoders_are_found_once_per_phase() -> None:
    module, batch = _module()
    model = module.model
    walk = [m for m in model.modules() if isinstance(m, FeatureEncoder)]
    assert model.modules_of(FeatureEncoder) == walk and len(walk) == 1
    assert model.modules_of(FeatureEncoder) is model.modules_of(FeatureEncoder)
    first = model.modules_of(FeatureEncoder)
    model.train()
    assert model.modules_of(FeatureEncoder) is not first and model.modules_of(FeatureEncoder) == walk
    assert model.regularization(batch) is None  # no id regularization configured
