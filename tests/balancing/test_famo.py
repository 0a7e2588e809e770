"""FAMO: weights are z_t / L_t (normalised), shift toward the task improving less, and learn from
the same batch re-evaluated after the optimizer step."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from tests.support.synthetic import synthetic_spec


def test_initial_weights_are_inverse_loss() -> None:
    balancer = build_balancer("famo", {}, ["a", "b"])
    balancer(torch.tensor([1.0, 3.0]), StepContext(step=0, epoch=0))
    torch.testing.assert_close(balancer.last_weights, torch.tensor([1.5, 0.5]))


def test_logits_favour_the_task_whose_loss_decreases_less() -> None:
    balancer = build_balancer("famo", {}, ["improving", "stuck"])
    losses = torch.tensor([1.0, 1.0])
    for step in range(100):
        balancer(losses, StepContext(step=step, epoch=0))
        losses = losses * torch.tensor([0.97, 1.0])
        balancer.after_step(losses, step)
    z = torch.softmax(balancer.logits, 0)
    assert z[1] > 0.6


def test_update_uses_the_same_batch_after_the_step() -> None:
    """Batch B's task-1 loss is far above batch A's: an update read from the next batch would
    see task 1 "get worse" by a lot; the same-batch update sees the true (small) change."""
    spec = synthetic_spec(2)
    df = generate(SyntheticConfig(rows=256, num_tasks=2, seed=0))
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df).columns()
    a = {k: v[:128] for k, v in table.items()}
    b = {k: v[128:].clone() for k, v in table.items()}
    b["labels"][:, 1] = 1 - b["labels"][:, 1]
    torch.manual_seed(0)
    model = build_model("shared_bottom", {}, ModelContext(pre.layout, spec.tasks))
    module = MultiTaskModule(model, spec.tasks, build_balancer("famo", {"gamma": 0.0}, model.task_names), TrainerConfig())
    module.train()
    opt = torch.optim.SGD(module.model.parameters(), lr=0.05)
    famo = module.balancer

    before = module.task_losses(module(a), a).detach()
    opt.zero_grad()
    module.training_step(a, 0).backward()
    opt.step()
    with torch.no_grad():
        after = module.task_losses(module(a), a)
    module.on_train_batch_end(None, a, 0)  # the loop's post-step hook
    expected_logits = famo.adam.__class__(2, famo.config.lr).step(torch.zeros(2), _softmax_grad(before, after))
    torch.testing.assert_close(famo.logits, expected_logits)
    # the next batch's losses do not enter the update of step A
    module.training_step(b, 1)
    torch.testing.assert_close(famo.logits, expected_logits)


def _softmax_grad(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    delta = (before + 1e-8).log() - (after + 1e-8).log()
    z = torch.full((2,), 0.5)
    return z * (delta - (z * delta).sum())
