"""RMTL: session transitions, TD critics, and critic loss weights that follow the reward."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from recsys_mtl.artifacts import load_checkpoint
from recsys_mtl.balancing.rmtl import RMTL, RMTLConfig, SessionEnv, rewards
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.models import build_model
from recsys_mtl.spec import load_pipeline, load_spec
from recsys_mtl.train.fit import fit
from tests.support.paths import ROOT
from tests.support.synthetic import make_context


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


def _session_pipeline(tmp_path: Path, session_column: str = "session", model: str = "mmoe") -> Path:
    """A pipeline file fitting tiny synthetic data cut into 5-row sessions with ``rl: rmtl``."""
    df = generate(SyntheticConfig(rows=900, num_tasks=2, seed=4)).with_columns(
        session=(pl.int_range(pl.len()) // 5).cast(pl.Utf8))
    for name, part in (("train", df[:600]), ("valid", df[600:750]), ("test", df[750:])):
        part.write_parquet(tmp_path / f"{name}.parquet")
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml").model_dump(mode="json", exclude_defaults=True)
    spec["group_by"] = "session"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    models = {"mmoe": {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
              "home": {"num_levels": 1, "global_experts": 2, "expert_hidden": [8], "expert_norm": True}}
    pipeline = {
        "name": "rmtl_sessions", "spec": "spec.yaml",
        "data": {"kind": "files", "train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet"},
        "model": {"name": model, "params": models[model]},
        "rl": {"name": "rmtl", "params": {"session_column": session_column, "gamma": 0.5, "weight_scale": 1.0}},
        "trainer": {"max_epochs": 3, "lr": 0.01, "batch_size": 128, "progress_bar": False, "plots": False, "log_every_n_steps": 1},
        "runs_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


@pytest.mark.slow
def test_rmtl_from_a_pipeline_file_through_the_cli(tmp_path: Path) -> None:
    """``recsys-mtl fit`` on a pipeline with ``rl: rmtl``: a complete run folder whose logs carry
    the critics' loss and loss weights (≥ 1, Q ≤ 0), and whose checkpoint holds the plain model."""
    from recsys_mtl.cli import main

    assert main(["fit", str(_session_pipeline(tmp_path, model="home"))]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["task0/auc"] > 0.6
    logs = pl.read_csv(run / "logs" / "metrics.csv")
    assert logs["rmtl/critic_loss"].drop_nulls().len() > 0
    for task in ("task0", "task1"):
        assert logs[f"rmtl/{task}/weight"].drop_nulls().min() >= 1.0
    state = load_checkpoint(run / "checkpoints" / "best.ckpt")["state_dict"]
    assert not any("critic" in k or "actor_target" in k for k in state)


def test_rmtl_session_column_must_be_a_group_column(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(_session_pipeline(tmp_path, session_column="cat0"))
    with pytest.raises(SpecError, match="rl.params.session_column.*'cat0'"):
        fit(cfg, spec)
    cfg, spec = load_pipeline(_session_pipeline(tmp_path), ["rl.params.gamma=2"])
    with pytest.raises(SpecError, match="rl.params.gamma"):
        fit(cfg, spec)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_rmtl_pipeline_checked_before_data_is_read(tmp_path: Path) -> None:
    from recsys_mtl.train.pipeline_checks import check_pipeline

    cfg, spec = load_pipeline(_session_pipeline(tmp_path, session_column="nope"))
    with pytest.raises(SpecError, match="rl.params.session_column"):
        check_pipeline(cfg, spec)
    cfg, spec = load_pipeline(_session_pipeline(tmp_path), ["rl.name=rmlt"])
    with pytest.raises(SpecError, match="rl.name.*did you mean"):
        check_pipeline(cfg, spec)
