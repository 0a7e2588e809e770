"""RMTL: session transitions, TD critics, and critic loss weights that follow the reward."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recsys_mtl.balancing.rmtl import RMTL, RMTLConfig, SessionEnv, rewards
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError
from recsys_mtl.models import build_model
from tests.conftest import make_context


def test_sessions_become_transitions() -> None:
    _, table = make_context(2, rows=6)
    env = SessionEnv.build(table, ["b", "a", "a", "b", "a", "c"], order=[5, 3, 1, 2, 2, 0])
    # session a: rows 2 (t=1) → 4 (t=2) → 1 (t=3); session b: 3 (t=2) → 0 (t=5); c: 5 alone
    assert env.next.tolist() == [0, 1, 4, 0, 1, 5]
    assert env.done.tolist() == [True, True, False, False, False, True]
    assert env.sessions == 3
    with pytest.raises(DataError, match="session ids"):
        SessionEnv.build(table, ["a"] * 5)


def test_rewards() -> None:
    a, y = torch.tensor([[0.9, 0.2]]), torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(rewards(a, y, "abs"), torch.tensor([[-0.1, -0.8]]))
    torch.testing.assert_close(rewards(a, y, "bce"), torch.log(torch.tensor([[0.9, 0.2]])))


def _noisy(table: EncodedTable, task: int, seed: int) -> EncodedTable:
    """``table`` with one task's labels replaced by coin flips: that task's reward stays low."""
    labels = table.labels.clone()
    labels[:, task] = torch.from_numpy(np.random.default_rng(seed).integers(0, 2, len(table))).float()
    return dataclasses.replace(table, labels=labels)


@pytest.mark.parametrize("noisy", [0, 1])
def test_critic_weights_follow_the_reward(noisy: int) -> None:
    """Sessions of 5 rows; one task's labels are unpredictable. Its rewards stay low, its critic
    value falls, and its loss weight 1 − λ·Q ends above the learnable task's — for either task."""
    torch.manual_seed(0)
    ctx, table = make_context(2, rows=1500, seed=3)
    table = _noisy(table, noisy, seed=1)
    env = SessionEnv.build(table, np.arange(len(table)) // 5)
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}, ctx)
    agent = RMTL(model, RMTLConfig(gamma=0.5, weight_scale=1.0), lr=3e-3)
    logs = agent.fit(env, epochs=4, batch_size=128)
    w = [logs[-1][f"weight/task{k}"] for k in range(2)]
    other = 1 - noisy
    assert w[noisy] > w[other] + 0.1, logs
    assert all(v >= 1.0 for v in w)  # Q <= 0: weights never below the plain loss


def test_td_target_uses_the_next_state_and_stops_at_session_end() -> None:
    torch.manual_seed(0)
    ctx, table = make_context(2, rows=8)
    agent = RMTL(build_model("mmoe", {"num_experts": 2, "expert_hidden": [8]}, ctx), RMTLConfig(gamma=0.5))
    state = torch.randn(4, agent.model.encoder.output_dim)
    next_state = torch.randn_like(state)
    action, next_action = torch.rand(4, 2), torch.rand(4, 2)
    reward = -torch.rand(4, 2)
    done = torch.tensor([False, True, False, True])
    # the reported loss is the TD error before the update
    with torch.no_grad():
        target = reward + 0.5 * (~done).float().unsqueeze(1) * agent.critic_target(next_state, next_action)
        expected = torch.nn.functional.mse_loss(agent.critic(state, action), target)
    assert agent.critic_step(state, action, reward, next_state, next_action, done) == pytest.approx(float(expected), rel=1e-6)


def test_target_actor_keeps_batchnorm_statistics_in_step() -> None:
    """HoME's expert BatchNorm: after each step the target's running mean/var are the Polyak
    average of their previous values and the actor's new ones, so they leave their initial values."""
    torch.manual_seed(0)
    ctx, table = make_context(2, rows=64, seed=2)
    model = build_model("home", {"num_levels": 1, "global_experts": 2, "expert_hidden": [8], "expert_norm": True}, ctx)
    agent = RMTL(model, RMTLConfig(tau=0.3))
    assert not agent.actor_target.training
    env = SessionEnv.build(table, np.arange(len(table)) // 4)
    tnorm = agent.actor_target.get_submodule(_norm_path(agent.model))
    anorm = agent.model.get_submodule(_norm_path(agent.model))
    for step in range(3):
        prev_mean, prev_var = tnorm.running_mean.clone(), tnorm.running_var.clone()
        agent.step(env, torch.arange(step * 16, step * 16 + 16))
        torch.testing.assert_close(tnorm.running_mean, 0.7 * prev_mean + 0.3 * anorm.running_mean)
        torch.testing.assert_close(tnorm.running_var, 0.7 * prev_var + 0.3 * anorm.running_var)
        assert int(tnorm.num_batches_tracked) == int(anorm.num_batches_tracked) == step + 1
    assert tnorm.running_mean.abs().max() > 1e-3  # moved off the initial zeros


def _norm_path(model: torch.nn.Module) -> str:
    return next(name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_critic_loss_ignores_masked_labels() -> None:
    """Per task, the TD loss averages only labelled rows: hand-computed on a 3-row, 2-task batch."""
    torch.manual_seed(0)
    ctx, _ = make_context(2, rows=8)
    agent = RMTL(build_model("mmoe", {"num_experts": 2, "expert_hidden": [8]}, ctx), RMTLConfig(gamma=0.5))
    state = torch.randn(3, agent.model.encoder.output_dim)
    next_state = torch.randn_like(state)
    action, next_action = torch.rand(3, 2), torch.rand(3, 2)
    reward = -torch.rand(3, 2)
    done = torch.tensor([False, False, True])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # row 1 task 0 and row 2 task 1 masked
    with torch.no_grad():
        q = agent.critic(state, action)
        qn = agent.critic_target(next_state, next_action)
    target = reward + 0.5 * torch.tensor([[1.0], [1.0], [0.0]]) * qn
    sq = (q - target) ** 2
    expected = ((sq[0, 0] + sq[2, 0]) / 2 + (sq[0, 1] + sq[1, 1]) / 2) / 2
    # a placeholder reward on a masked cell must not matter
    junk = reward.clone()
    junk[1, 0], junk[2, 1] = -100.0, -100.0
    assert agent.critic_step(state, action, junk, next_state, next_action, done, mask) == pytest.approx(float(expected), rel=1e-6)
