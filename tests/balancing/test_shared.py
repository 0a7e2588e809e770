"""Gradient strategies act on every family's shared experts, in both gradient spaces.

On a batch of conflicting tasks (task1's label is the complement of task0's), PCGrad and MGDA must
change the gradient of every shared parameter (``MultiTaskModel.shared_parameters()``: all levels'
shared experts and gates; with ``on: representation``, those below the representation) relative
to equal weighting, with ``on: representation`` and with ``on: shared_parameters``.
"""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.balancing import StepContext, build_balancer
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.models import ModelContext, available_models, build_model
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from tests.support.synthetic import synthetic_spec
from tests.support.export import funnel_spec


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    spec = funnel_spec(synthetic_spec(2))  # task1 after task0: valid for funnel models, ignored by the rest
    df = generate(SyntheticConfig(rows=256, num_tasks=2, seed=0))
    pre = Preprocessor.fit(spec, df)
    batch = pre.transform(df).columns()
    batch["labels"][:, 1] = 1 - batch["labels"][:, 0]  # opposite targets: the tasks conflict
    return spec, pre, batch


def shared_grads(name: str, method: str, on: str | None, data, seed: int):  # type: ignore[no-untyped-def]
    spec, pre, batch = data
    torch.manual_seed(seed)
    model = build_model(name, {}, ModelContext(pre.layout, spec.tasks))
    params = {} if on is None else {"on": on}
    module = MultiTaskModule(model, spec.tasks, build_balancer(method, params, model.task_names), TrainerConfig())
    module.train()
    losses = module.task_losses(module(batch), batch)
    reps = module.shared.pop()
    ctx = StepContext(step=0, epoch=0, model=model, shared=reps, shared_params=module.shared.params)
    shared = {id(p) for p in model.shared_parameters()}
    if on == "representation" and reps:  # what lies below the representation (multitab's last block does not)
        below = torch.autograd.grad(sum(z.sum() for z in reps), module.shared.params, retain_graph=True, allow_unused=True)
        shared = {id(p) for p, g in zip(module.shared.params, below) if g is not None}
    module.balancer(losses, ctx).backward()
    module.shared.remove()
    names = [n for n, p in model.named_parameters() if id(p) in shared and p.requires_grad]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if n in names and p.grad is not None}
    return names, grads, module.balancer


@pytest.mark.slow
@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("on", ["representation", "shared_parameters"])
def test_pcgrad_and_mgda_change_every_shared_parameter(data, name: str, on: str) -> None:  # type: ignore[no-untyped-def]
    for method in ("pcgrad", "mgda"):
        for seed in range(5):  # an initialisation under which the two tasks' gradients conflict
            names, balanced, balancer = shared_grads(name, method, on, data, seed)
            if method == "mgda" or balancer.diagnostics()["conflict_rate"] > 0:
                break
        else:
            pytest.fail(f"{name}: no conflict between opposite tasks in 5 initialisations")
        _, equal, _ = shared_grads(name, "equal", None, data, seed)
        assert names, f"{name}: no shared parameters"
        scale = max(float(g.abs().max()) for g in equal.values())
        for n in names:
            assert n in balanced and n in equal, f"{name}: {n} got no gradient"
            if float(equal[n].abs().max()) < 1e-6 * scale:
                continue  # structurally zero (a bias right before a BatchNorm, as in HoME's experts)
            assert not torch.allclose(balanced[n], equal[n], rtol=1e-4, atol=1e-7), f"{name} {method} on {on}: {n} unchanged"


def test_pcgrad_and_cagrad_default_to_parameters() -> None:
    for method in ("pcgrad", "cagrad"):
        assert build_balancer(method, {}, ["a", "b"]).config.on == "shared_parameters"  # type: ignore[attr-defined]
    for method in ("mgda", "aligned_mtl", "gradnorm"):
        assert build_balancer(method, {}, ["a", "b"]).config.on == "representation"  # type: ignore[attr-defined]


def test_several_representations_are_one_gradient() -> None:
    """Two captured tensors act as one concatenated representation."""
    G = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0]])
    p = torch.nn.Parameter(torch.zeros(3))
    z1, z2 = p[:1] * 1.0, p[1:] * 1.0
    losses = 1.0 + (torch.cat([z1, z2])[None, :] * G).sum(1)
    ctx = StepContext(step=0, epoch=0, shared=[z1, z2], shared_params=[p])
    build_balancer("pcgrad", {"on": "representation"}, ["a", "b"])(losses, ctx).backward()
    Gd = G.double()
    K = Gd @ Gd.T
    g0 = Gd[0] - K[0, 1] / K[1, 1] * Gd[1]
    g1 = Gd[1] - K[0, 1] / K[0, 0] * Gd[0]
    torch.testing.assert_close(p.grad, (g0 + g1).float())


def test_sparse_tables_stay_out_of_parameter_targets(data) -> None:  # type: ignore[no-untyped-def]
    """ESMM's only shared block is the encoder: with sparse-gradient tables it has no dense shared
    parameter, so PCGrad falls back to the representation and the tables keep sparse gradients."""
    spec, pre, batch = data
    torch.manual_seed(0)
    model = build_model("esmm", {}, ModelContext(pre.layout, spec.tasks))
    cfg = TrainerConfig(sparse_min_rows=0)
    module = MultiTaskModule(model, spec.tasks, build_balancer("pcgrad", {}, model.task_names), cfg)
    assert module.sparse_tables
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse}
    assert tables and not tables & {id(p) for p in module.shared.params}
    module.train()
    losses = module.task_losses(module(batch), batch)
    ctx = StepContext(step=0, epoch=0, model=model, shared=module.shared.pop(), shared_params=module.shared.params)
    module.balancer(losses, ctx).backward()
    sparse = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    assert all(w.grad is not None and w.grad.is_sparse for w in sparse)
