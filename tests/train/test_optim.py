"""Optimizer groups (what is decayed) and the learning-rate schedules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from recsys_mtl.train.optim import lr_scheduler, param_groups
from recsys_mtl.train.fit import fit
from tests.support.synthetic import synthetic_spec

ROOT = Path(__file__).resolve().parents[2]


def test_decay_only_on_dense_weights_and_every_parameter_once(fitted) -> None:
    pre, _ = fitted
    spec = synthetic_spec(2)
    encoder = {"numeric_embedding": {"kind": "periodic", "d_embedding": 4}}
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, encoder))
    balancer = build_balancer("uncertainty", {}, model.task_names)
    module = MultiTaskModule(model, spec.tasks, balancer, TrainerConfig(weight_decay=0.1))
    groups = {g["name"]: g for g in param_groups(model, balancer, 0.1)}
    assert set(groups) == {"embeddings", "dense", "dense_no_decay", "balancer"}
    seen = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in module.parameters() if p.requires_grad)
    assert {n: g["weight_decay"] for n, g in groups.items()} == {"embeddings": 0.0, "dense": 0.1, "dense_no_decay": 0.0, "balancer": 0.0}
    emb = {id(p) for p in groups["embeddings"]["params"]}
    assert id(model.encoder.embeddings["cat0"].weight) in emb
    assert all(id(p) in emb for p in model.encoder.numeric_embedding.parameters())
    assert all(p.ndim >= 2 for p in groups["dense"]["params"])
    assert id(balancer.log_vars) in {id(p) for p in groups["balancer"]["params"]}


def _lrs(cfg: TrainerConfig, steps: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = lr_scheduler(opt, cfg, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_warmup_then_decay_to_the_floor(kind: str) -> None:
    cfg = TrainerConfig(lr=0.01, lr_schedule=kind, warmup_fraction=0.1, min_lr_ratio=0.05)
    lrs = _lrs(cfg, 200)
    peak = lrs.index(max(lrs))
    assert 15 <= peak <= 25 and max(lrs) == pytest.approx(0.01, rel=0.02)
    assert lrs[0] < 0.002
    assert all(a >= b - 1e-12 for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] == pytest.approx(0.0005, rel=0.1)


def test_constant_without_warmup_has_no_scheduler() -> None:
    assert _lrs(TrainerConfig(lr=0.01), 10) == [0.01] * 10


@pytest.mark.slow
def test_fit_with_cosine_schedule_ends_at_the_floor(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1200", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=2", "trainer.patience=5",
        "trainer.batch_size=256", "trainer.progress_bar=false", "trainer.plots=false", f"runs_dir={tmp_path / 'runs'}",
        "trainer.lr_schedule=cosine", "trainer.min_lr_ratio=0.1", "trainer.weight_decay=0.01",
    ])
    run = fit(cfg, spec)
    last = torch.load(run.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    groups = last["optimizer_states"][0]["param_groups"]
    assert {g["name"] for g in groups} >= {"embeddings", "dense"}
    assert {g["name"]: g["weight_decay"] for g in groups}["dense"] == 0.01
    # cosine over the 2 epochs' steps: the last step sits at the floor, 10% of lr
    assert all(g["lr"] == pytest.approx(0.1 * cfg.trainer.lr, rel=0.05) for g in groups)


def test_dense_adamw_is_fused_and_steps_as_the_unfused_one() -> None:
    from recsys_mtl.train.optim import dense_adamw

    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    mine = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    plain = torch.optim.AdamW([{"params": ref[:1], "weight_decay": 0.1}, {"params": ref[1:], "weight_decay": 0.0}], lr=0.01)
    fused = dense_adamw([{"params": mine[:1], "weight_decay": 0.1}, {"params": mine[1:], "weight_decay": 0.0}], 0.01)
    assert fused.defaults["fused"] is True
    for step in range(5):
        grads = [torch.randn_like(p) for p in ref]
        for ps, opt in ((ref, plain), (mine, fused)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
        if step == 2:  # a checkpoint of the unfused optimizer resumes in the fused one
            fused.load_state_dict(copy.deepcopy(plain.state_dict()))  # a copy: load_state_dict keeps the tensors
            for p, q in zip(mine, ref):
                p.data.copy_(q.data)
    for p, q in zip(mine, ref):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
