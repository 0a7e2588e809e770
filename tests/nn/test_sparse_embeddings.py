"""Row-sparse embedding training: only looked-up rows (and their optimizer state) move."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.spec import load_pipeline
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from recsys_mtl.train.optim import CombinedOptimizer, clip_gradients, embedding_tables
from recsys_mtl.train.fit import fit
from tests.support.synthetic import make_context

ROOT = Path(__file__).resolve().parents[2]


def sparse_module(optimizer: str, min_rows: int = 0) -> tuple[MultiTaskModule, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    context, table = make_context(2, rows=400)
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}, context)
    cfg = TrainerConfig(embedding_optimizer=optimizer, sparse_min_rows=min_rows, lr=0.01, weight_decay=0.1)  # type: ignore[arg-type]
    module = MultiTaskModule(model, context.tasks, build_balancer("uncertainty", {}, model.task_names), cfg)
    return module, table.columns()


@pytest.mark.parametrize("optimizer, state_key", [("sparse_adam", "exp_avg"), ("rowwise_adagrad", "sum")])
def test_a_step_moves_only_the_rows_the_batch_looked_up(optimizer: str, state_key: str) -> None:
    module, cols = sparse_module(optimizer)
    assert module.sparse_tables and not module.model.encoder.fused  # type: ignore[union-attr]
    opt = module.configure_optimizers()
    assert isinstance(opt, CombinedOptimizer)
    batch = {k: v[:16] for k, v in cols.items()}
    tables = embedding_tables(module.model)
    before = {n: e.weight.detach().clone() for n, e in tables.items()}
    opt.zero_grad()
    losses = module.task_losses(module(batch), batch)
    losses.sum().backward()
    assert all(e.weight.grad is None or e.weight.grad.is_sparse for e in tables.values())
    opt.step()
    cat_tables = module.model.encoder.cat_tables  # type: ignore[union-attr]
    checked = 0
    for name, emb in tables.items():
        table = name.rsplit(".", 1)[-1]
        used = torch.unique(torch.cat([batch["categorical"][:, i] for i, t in enumerate(cat_tables) if t == table] or [torch.empty(0, dtype=torch.long)]))
        if not len(used):
            continue
        untouched = torch.ones(emb.num_embeddings, dtype=torch.bool)
        untouched[used] = False
        moved = (emb.weight.detach() != before[name]).any(dim=1)
        assert moved[used].all(), name
        assert not moved[untouched].any(), name
        state = opt.state[emb.weight][state_key]
        nonzero = state.reshape(emb.num_embeddings, -1).abs().sum(dim=1) > 0
        assert nonzero[used].all() and not nonzero[untouched].any(), name
        checked += 1
    assert checked >= 2


def test_small_tables_stay_dense_and_fused_by_default() -> None:
    module, _ = sparse_module("auto", min_rows=100_000)
    assert module.sparse_tables == []
    assert not any(e.sparse for e in embedding_tables(module.model).values())
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)


def test_no_weight_decay_on_embeddings_or_balancer() -> None:
    module, _ = sparse_module("dense")
    opt = module.configure_optimizers()
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {id(e.weight) for e in embedding_tables(module.model).values()} <= no_decay
    assert {id(p) for p in module.balancer.parameters()} <= no_decay and list(module.balancer.parameters())
    assert decay and decay.isdisjoint(no_decay)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.parameters()))


def test_combined_state_round_trips() -> None:
    module, cols = sparse_module("sparse_adam")
    opt = module.configure_optimizers()
    module.task_losses(module(cols), cols).sum().backward()
    opt.step()
    again = module.configure_optimizers()
    again.load_state_dict(opt.state_dict())
    for p, s in opt.state.items():
        for k, v in s.items():
            assert torch.equal(torch.as_tensor(again.state[p][k]), torch.as_tensor(v))


@pytest.mark.slow
def test_sparse_fit_under_lightning_bf16_and_export(tmp_path: Path) -> None:
    overrides = [
        "data.rows=1500", f"data.cache_dir={tmp_path}", "trainer.max_epochs=2", "trainer.batch_size=128",
        "trainer.progress_bar=false", "trainer.plots=false", "trainer.sparse_min_rows=0", "trainer.precision=bf16-mixed",
        "trainer.embedding_optimizer=rowwise_adagrad", "trainer.embedding_lr=0.05", "trainer.gradient_clip_val=1.0", f"runs_dir={tmp_path / 'runs'}",
    ]
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", overrides)
    result = fit(cfg, spec)
    assert result.metrics["val"]["task0/auc"] > 0.6
    exported = export_run(result.run_dir, tmp_path / "export")
    assert exported.metadata["parity"]["max_abs_diff"] <= 1e-5
    # resuming restores the combined optimizer's state from last.ckpt and trains on
    resumed_cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"max_epochs": 3})})
    assert fit(resumed_cfg, spec, resume=result.run_dir).metrics["epochs_run"] == 3


def test_lr_scheduler_drives_both_optimizers() -> None:
    module, _ = sparse_module("sparse_adam")
    opt = module.configure_optimizers()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert [g["lr"] for o in opt.optimizers for g in o.param_groups] == [0.005] * len(opt.param_groups)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_sparse_gradients_matches_torch_on_dense_ones(algorithm: str) -> None:
    torch.manual_seed(0)
    sparse, dense = torch.nn.Embedding(20, 3, sparse=True), torch.nn.Embedding(20, 3)
    dense.weight.data.copy_(sparse.weight.data)
    lin = torch.nn.Linear(3, 1)
    idx = torch.tensor([1, 4, 4, 7])
    for emb in (sparse, dense):
        (lin(emb(idx)) * 10).sum().backward()
    dense_lin_grad = lin.weight.grad.clone() / 2  # backward ran twice through lin
    lin.weight.grad, lin.bias.grad = dense_lin_grad.clone(), lin.bias.grad / 2
    other = [torch.nn.Parameter(torch.zeros(1, 3))]
    other[0].grad = dense_lin_grad.clone()
    clip_gradients([sparse.weight, lin.weight], 0.5, algorithm)
    if algorithm == "norm":
        torch.nn.utils.clip_grad_norm_([dense.weight, other[0]], 0.5)
    else:
        torch.nn.utils.clip_grad_value_([dense.weight, other[0]], 0.5)
    torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)
    torch.testing.assert_close(lin.weight.grad, other[0].grad)
