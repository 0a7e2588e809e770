"""RMTL: reinforcement-learning task weights (Liu et al., "Multi-Task Recommendations with
Reinforcement Learning", WWW 2023) — a training mode, not a :class:`Balancer`.

Why not a balancer: RMTL weighs each *sample's* task loss by a critic that reads the sample's
state and the model's action, and the critic learns from transitions between consecutive rows of
a user session; the balancer interface sees only the batch's (T,) task losses.

The MDP, as in the paper and its reference code:

- a session (rows sharing a session id, in time order) is an episode; the state ``s_t`` is row
  t's encoded features, the action ``a_t`` the base model's per-task probabilities (the actor is
  the multitask model itself, any registered family with binary tasks);
- the reward per task is ``r_t,k = −|a_t,k − y_t,k|`` (or the log likelihood, ``reward: bce``);
- one critic per task, ``Q_k(s, a_k) ≤ 0`` (a negated output, as the reference's CriticNeg),
  trained by TD(0) against target networks: ``r_t,k + γ·(1 − done)·Q'_k(s_{t+1}, a'_{t+1,k})``
  with ``a'`` from a target copy of the actor; targets follow by soft updates (τ);
- the actor is trained on ``Σ_k mean_b[(1 − λ·Q_k(s_b, a_b,k)) · BCE_k,b]``: the critic outputs
  per-sample, per-task loss weights, larger where the expected cumulative reward of the task is low.

Reference code: github.com/Applied-Machine-Learning-Lab/RMTL (``agents/DDPG_ESMM.py``,
``agents/DDPG_ESMM_BC.py``, ``layers/critic.py``). Reached from a pipeline by ``rl: {name: rmtl}``
(:mod:`recsys_mtl.train.rmtl_module`), or from Python by :class:`RMTL`.

Deviations:

- the reference runs an offline RL phase (DDPG/TD3 with behaviour cloning) from a pretrained actor
  and then a separate "polish" phase with the frozen critics; here both run in one online loop —
  each step updates the critics on the current actor's actions, then the actor on the
  critic-weighted loss — so a run needs no pretraining stage;
- the critics read the actor's encoded features (detached) instead of their own embedding tables;
- the critic output is ``−softplus`` where the reference uses ``−ReLU``: a ReLU head that goes
  negative outputs 0 with zero gradient for good, freezing that task's weight at 1;
- the soft update also moves buffers (float ones Polyak-averaged, integer ones copied): the
  reference averages parameters only, but its actor never leaves eval mode, so its buffers never
  change; ours trains in train mode. The target actor is in eval mode, as the reference's;
- the critic TD loss is masked per task (rows whose task label is masked add nothing); the
  reference has no masked labels. Its loss is the mean over tasks of each task's masked mean;
- no TD3 twin-minimum target, no exploration noise on actions, no IPS weights on the critic
  loss (the reference's ``ips`` option), one critic network with a head per task rather than
  one network per task.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch, EncodedTable, features_only
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.strict import ParamsModel


class RMTLConfig(ParamsModel):
    gamma: float = Field(0.9, ge=0, lt=1)
    """discount γ of the critics' TD(0) target over a session"""
    weight_scale: float = Field(0.5, ge=0)
    """λ of the loss weights 1 − λ·Q"""
    tau: float = Field(0.2, gt=0, le=1)
    """soft-update rate τ of the target actor and critics"""
    critic_lr: float = Field(1e-3, gt=0)
    """learning rate of the critics' Adam"""
    critic_hidden: list[int] = Field(default_factory=lambda: [64, 32])
    """hidden widths of the critic network (one head per task)"""
    reward: str = Field("abs", pattern="^(abs|bce)$")
    """per-task reward: `abs` (−|prediction − label|) or `bce` (the log likelihood)"""


@dataclass
class SessionEnv:
    """Transitions of a table ordered into sessions: row ``t`` → row ``next[t]`` (itself when done)."""

    table: EncodedTable
    next: np.ndarray  # (N,) int64
    done: np.ndarray  # (N,) bool
    sessions: int = field(default=0)

    @classmethod
    def build(cls, table: EncodedTable, session_ids: Sequence[object], order: Sequence[float] | None = None) -> "SessionEnv":
        """Rows grouped by ``session_ids`` and sorted by ``order`` (default: row order) within a session."""
        n = len(table)
        if len(session_ids) != n or (order is not None and len(order) != n):
            raise DataError(f"RMTL sessions: {len(session_ids)} session ids for {n} rows")
        ids = np.asarray(session_ids)
        if ids.dtype.kind not in "iu":  # strings, mixed objects: compared as text
            ids = np.asarray(session_ids, dtype=object).astype(str)
        _, codes = np.unique(ids, return_inverse=True)
        key = np.asarray(order, dtype=np.float64) if order is not None else np.arange(n, dtype=np.float64)
        ranked = np.lexsort((key, codes))  # by session, then time
        nxt = np.arange(n)
        done = np.ones(n, dtype=bool)
        same = codes[ranked[:-1]] == codes[ranked[1:]]
        nxt[ranked[:-1][same]] = ranked[1:][same]
        done[ranked[:-1][same]] = False
        return cls(table, nxt, done, int(codes.max()) + 1 if n else 0)


class MultiTaskCritic(nn.Module):
    """(B, D) state, (B, T) actions → (B, T) values ``Q_k(s, a_k) ≤ 0``: a shared state MLP and one
    head per task reading [state features, that task's action]."""

    def __init__(self, state_dim: int, num_tasks: int, hidden: list[int]):
        super().__init__()
        self.state = MLP(state_dim, hidden[:-1] or hidden, "relu")
        self.heads = nn.ModuleList([MLP(self.state.out_dim + 1, hidden[-1:], "relu") for _ in range(num_tasks)])
        self.out = nn.ModuleList([nn.Linear(hidden[-1], 1) for _ in range(num_tasks)])

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        h = self.state(state)
        q = [o(head(torch.cat([h, action[:, k:k + 1]], dim=1))) for k, (head, o) in enumerate(zip(self.heads, self.out))]
        return -F.softplus(torch.cat(q, dim=1))


def rewards(action: Tensor, labels: Tensor, kind: str) -> Tensor:
    """(B, T) probabilities and labels → (B, T) rewards (both ≤ 0; 0 is perfect)."""
    if kind == "bce":
        a = action.clamp(1e-4, 1 - 1e-4)
        return labels * torch.log(a) + (1 - labels) * torch.log(1 - a)
    return -(action - labels).abs()


class RMTLCritics:
    """The critic side of RMTL for an actor ``model``: per-task critics, their target copy, the
    target actor and the critics' optimiser. Not an ``nn.Module`` on purpose: whoever holds it
    (the loop below, :class:`recsys_mtl.train.rmtl_module.RMTLModule`) keeps it out of the
    trained model's state dict, so checkpoints and export hold the actor alone."""

    def __init__(self, model: MultiTaskModel, config: RMTLConfig):
        if any(t.type != "binary" for t in model.context.tasks):
            raise SpecError("RMTL: every task must be binary (the action is a probability per task)")
        self.cfg = config
        self.task_names = list(model.task_names)
        self.critic = MultiTaskCritic(model.encoder.output_dim, len(self.task_names), config.critic_hidden)
        self.critic_target = copy.deepcopy(self.critic)
        # the target actor evaluates in eval mode (running statistics, no dropout), as the
        # reference's deep copy of its eval-mode pretrained actor; it never trains
        self.actor_target = copy.deepcopy(model).eval()
        self.actor_target.requires_grad_(False)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)

    def to(self, device: torch.device | str) -> "RMTLCritics":
        """Move the networks (before the first critic step: Adam's state is created lazily)."""
        for net in (self.critic, self.critic_target, self.actor_target):
            net.to(device)
        return self

    def action(self, model: nn.Module, feats: Batch) -> tuple[dict[str, Tensor], Tensor]:
        """Logits per task and the (B, T) action: each task's probability."""
        logits = model(feats)
        return logits, torch.stack([torch.sigmoid(logits[t]) for t in self.task_names], dim=1)

    def critic_step(self, state: Tensor, action: Tensor, reward: Tensor, next_state: Tensor, next_action: Tensor,
                    done: Tensor, mask: Tensor | None = None) -> float:
        """One TD(0) update of the critics; all inputs detached, (B, ·).

        ``mask`` (B, T): the rows' task weights; a row whose label for task k is masked (weight 0)
        has no reward for k, so it adds nothing to critic k's loss. The loss is the masked mean
        squared TD error per task (over that task's labelled rows), averaged over tasks — the plain
        mean over (B, T) when nothing is masked."""
        with torch.no_grad():
            target = reward + self.cfg.gamma * (1.0 - done.float()).unsqueeze(1) * self.critic_target(next_state, next_action)
        sq = (self.critic(state, action) - target) ** 2  # (B, T)
        m = torch.ones_like(sq) if mask is None else (mask > 0).to(sq.dtype)
        loss = ((sq * m).sum(0) / m.sum(0).clamp_min(1.0)).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def update(self, model: MultiTaskModel, feats: Batch, next_feats: Batch, done: Tensor, action: Tensor,
               labels: Tensor, mask: Tensor) -> tuple[Tensor, float]:
        """Critic step on the transitions (row → its next row) of a batch, then the actor's
        per-sample loss weights ``1 − λ·Q_k(s, a_k)`` (B, T), detached, and the critic loss.

        ``action`` (B, T): the actor's probabilities on ``feats`` from the step's own forward."""
        action = action.detach()
        with torch.no_grad():
            state = model.encoder(feats).detach()
            next_state = model.encoder(next_feats).detach()
            _, next_action = self.action(self.actor_target, next_feats)
        closs = self.critic_step(state, action, rewards(action, labels, self.cfg.reward), next_state, next_action, done, mask)
        with torch.no_grad():
            weights = 1.0 - self.cfg.weight_scale * self.critic(state, action)  # (B, T) >= 1
        return weights, closs

    def soft_update(self, model: nn.Module) -> None:
        """Polyak update ``θ' ← τ·θ + (1 − τ)·θ'`` of both targets, buffers included: float
        buffers (BatchNorm running mean/var, e.g. HoME's expert normalisation) are averaged the
        same way, integer ones (``num_batches_tracked``) copied. The reference averages
        parameters only, but its actor stays in eval mode so its buffers never move; ours trains
        in train mode, and a parameters-only update would leave the target's statistics at their
        initial values."""
        tau = self.cfg.tau
        with torch.no_grad():
            for target, source in ((self.critic_target, self.critic), (self.actor_target, model)):
                for t, s in zip(target.parameters(), source.parameters()):
                    t.mul_(1 - tau).add_(s, alpha=tau)
                for tb, sb in zip(target.buffers(), source.buffers()):
                    if tb.is_floating_point():
                        tb.mul_(1 - tau).add_(sb, alpha=tau)
                    else:
                        tb.copy_(sb)


class RMTL:
    """Trains ``model`` (the actor) with critic-weighted task losses on a :class:`SessionEnv`
    (a plain loop; a pipeline reaches the same step through ``rl: {name: rmtl}``)."""

    def __init__(self, model: MultiTaskModel, config: RMTLConfig, lr: float = 1e-3):
        self.model, self.cfg = model, config
        self.critics = RMTLCritics(model, config)
        self.actor_opt = torch.optim.Adam(model.parameters(), lr=lr)
        #: mean per-task loss weights 1 − λ·Q of the latest step, (T,)
        self.last_weights = torch.ones(len(model.task_names))

    @property
    def critic(self) -> MultiTaskCritic:
        return self.critics.critic

    @property
    def critic_target(self) -> MultiTaskCritic:
        return self.critics.critic_target

    @property
    def actor_target(self) -> nn.Module:
        return self.critics.actor_target

    def critic_step(self, state: Tensor, action: Tensor, reward: Tensor, next_state: Tensor, next_action: Tensor,
                    done: Tensor, mask: Tensor | None = None) -> float:
        return self.critics.critic_step(state, action, reward, next_state, next_action, done, mask)

    def step(self, env: SessionEnv, rows: Tensor) -> dict[str, float]:
        """Critic then actor update on the transitions starting at ``rows`` (1-D index)."""
        cols = env.table.columns()
        batch = {k: v[rows] for k, v in cols.items()}
        nxt = torch.from_numpy(env.next)[rows]
        next_batch = features_only({k: v[nxt] for k, v in cols.items()})
        done = torch.from_numpy(env.done)[rows]
        labels, mask = batch["labels"], batch["weights"]

        self.model.train()
        logits, action = self.critics.action(self.model, features_only(batch))
        weights, closs = self.critics.update(self.model, features_only(batch), next_batch, done, action, labels, mask)
        bce = torch.stack([F.binary_cross_entropy_with_logits(logits[t], labels[:, k], reduction="none")
                           for k, t in enumerate(self.model.task_names)], dim=1)
        per_task = (weights * bce * mask).sum(0) / mask.sum(0).clamp_min(1.0)
        loss = per_task.sum()
        self.actor_opt.zero_grad()
        loss.backward()
        self.actor_opt.step()
        self.critics.soft_update(self.model)
        self.last_weights = ((weights * mask).sum(0) / mask.sum(0).clamp_min(1.0)).detach()
        return {"critic_loss": closs, "actor_loss": float(loss.detach())}

    def fit(self, env: SessionEnv, epochs: int, batch_size: int = 512, seed: int = 0) -> list[dict[str, float]]:
        """``epochs`` passes over the transitions in shuffled mini-batches; returns per-epoch logs
        (mean losses and the mean loss weight per task)."""
        gen = torch.Generator().manual_seed(seed)
        logs = []
        n = len(env.table)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            steps, w = [], []
            for s in range(0, n, batch_size):
                steps.append(self.step(env, perm[s:s + batch_size]))
                w.append(self.last_weights)
            mean_w = torch.stack(w).mean(0)
            logs.append({"critic_loss": float(np.mean([x["critic_loss"] for x in steps])),
                         "actor_loss": float(np.mean([x["actor_loss"] for x in steps])),
                         **{f"weight/{t}": float(v) for t, v in zip(self.model.task_names, mean_w)}})
        self.model.eval()
        return logs
