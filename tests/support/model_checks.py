"""Checks shared by the model tests: output contract, gradient flow, gates as distributions,
batch independence, and a short fit against the constant (base-rate) predictor."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import Batch, EncodedTable, features_only
from recsys_mtl.models import ModelContext, MultiTaskModel
from recsys_mtl.nn.blocks import Gate
from recsys_mtl.spec import FeatureSpec
from tests.support.synthetic import synthetic_spec


def feats(table: EncodedTable, rows: slice | Tensor = slice(None)) -> Batch:
    return {k: v[rows] for k, v in features_only(table.columns()).items()}


def assert_output_contract(model: MultiTaskModel, table: EncodedTable) -> None:
    """One float32, finite (B,) logit vector per task, in the spec's task order."""
    out = model(feats(table))
    assert list(out) == list(model.task_names)
    for name, v in out.items():
        assert v.shape == (len(table),) and v.dtype == torch.float32, (name, v.shape, v.dtype)
        assert bool(torch.isfinite(v).all()), name


def assert_gradients_reach_everything(model: MultiTaskModel, table: EncodedTable) -> None:
    """Every parameter gets a non-zero gradient from the sum of the task outputs (plus the auxiliary loss)."""
    model.train()
    out = model(feats(table))
    loss = sum(v.pow(2).mean() for v in out.values())
    aux = model.auxiliary_loss()
    (loss + (aux if aux is not None else 0.0)).backward()  # type: ignore[operator]
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reaches {missing}"


def assert_gates_are_distributions(model: MultiTaskModel, table: EncodedTable) -> int:
    """After a forward pass every softmax gate's weights are non-negative and sum to 1 per row;
    returns how many gates there are."""
    with torch.no_grad():
        model(feats(table))
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    for gate in gates:
        w = gate.last_weights
        # a multiple of the batch: dtrn runs its inner model once per task view, stacked
        assert w is not None and w.dim() == 2 and w.shape[0] % len(table) == 0 and bool((w >= 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]), atol=1e-6, rtol=0)
    return len(gates)


def assert_batch_independent(model: MultiTaskModel, table: EncodedTable) -> None:
    """In eval mode the first 10 rows score the same alone and inside a batch of other rows."""
    model.train()
    with torch.no_grad():
        model(feats(table))  # one training pass, so BatchNorm running statistics are not the initial ones
    model.eval()
    with torch.no_grad():
        alone = model(feats(table, slice(0, 10)))
        others = torch.randperm(len(table) - 10, generator=torch.Generator().manual_seed(0))[:100] + 10
        mixed = model(feats(table, torch.cat([torch.arange(10), others])))
    for task, logits in alone.items():
        torch.testing.assert_close(logits, mixed[task][:10], atol=1e-5, rtol=1e-5)


def fit_briefly(model: MultiTaskModel, table: EncodedTable, steps: int = 150, lr: float = 3e-3, batch: int = 128) -> None:
    """A few Adam steps of weighted BCE on every task (plus the model's auxiliary loss)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cols = table.columns()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(table), (batch,))
        out = model({k: v[idx] for k, v in features_only(cols).items()})
        y, w = cols["labels"][idx], cols["weights"][idx]
        loss = sum(
            (F.binary_cross_entropy_with_logits(out[name], y[:, t], reduction="none") * w[:, t]).sum() / w[:, t].sum()
            for t, name in enumerate(model.task_names)
        )
        aux = model.auxiliary_loss()
        if aux is not None:
            loss = loss + aux
        opt.zero_grad()
        loss.backward()  # type: ignore[union-attr]
        opt.step()


def held_out_logloss(model: MultiTaskModel, table: EncodedTable, base_rates: Tensor) -> tuple[list[float], list[float]]:
    """(model log loss, constant-predictor log loss) per task on ``table``; constant = ``base_rates``."""
    model.eval()
    with torch.no_grad():
        out = model(feats(table))
    y, w = table.labels, table.weights
    ours, const = [], []
    for t, name in enumerate(model.task_names):
        c = torch.logit(base_rates[t].clamp(1e-4, 1 - 1e-4)).expand_as(y[:, t])
        for logits, acc in ((out[name], ours), (c, const)):
            acc.append(float((F.binary_cross_entropy_with_logits(logits, y[:, t], reduction="none") * w[:, t]).sum() / w[:, t].sum()))
    return ours, const


def split(table: EncodedTable, n_train: int) -> tuple[EncodedTable, EncodedTable]:
    """First ``n_train`` rows and the rest (same generator draw, so the same task weights)."""
    return table.permuted(torch.arange(n_train)), table.permuted(torch.arange(n_train, len(table)))


def click_conversion_spec() -> FeatureSpec:
    """Two tasks on the synthetic columns as a funnel: ctr = label0; ctcvr = label0 AND label1,
    declared ``after`` ctr, so a conversion only happens on a click."""
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["tasks"] = [
        {"name": "ctr", "label": "label0"},
        {"name": "ctcvr", "label": "label0 * label1", "after": "ctr"},
    ]
    return FeatureSpec.model_validate(raw)


@lru_cache(maxsize=None)
def learnable_data(num_tasks: int = 2, rows: int = 2000, n_train: int = 1500, funnel: bool = False) -> tuple[ModelContext, EncodedTable, EncodedTable]:
    """Synthetic data with a strong, mostly linear signal (complexity 1, scale 3), so a few dozen
    steps separate a model that learns from one that does not; (context, train, test).
    ``funnel``: the two tasks of :func:`click_conversion_spec` instead of independent ones.
    Cached per process (the fits only read the tables), like ``model_table.context``."""
    spec = click_conversion_spec() if funnel else synthetic_spec(num_tasks)
    df = generate(SyntheticConfig(rows=rows, num_tasks=num_tasks, complexity=1, scale=3.0, seed=3))
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df)
    if funnel:
        assert bool((table.labels[:, 1] <= table.labels[:, 0]).all())  # conversions only on clicks
    train, test = split(table, n_train)
    return ModelContext(layout=pre.layout, tasks=spec.tasks), train, test


def assert_fit_beats_constant(model: MultiTaskModel, train: EncodedTable, test: EncodedTable, steps: int = 40, **kw: Any) -> None:
    """After ``steps`` steps, held-out log loss is at least 10% below the base-rate predictor's."""
    threads = torch.get_num_threads()
    # one thread: on a shared, oversubscribed machine intra-op threads spin-wait and run several times slower
    torch.set_num_threads(1)
    try:
        fit_briefly(model, train, steps=steps, **kw)
    finally:
        torch.set_num_threads(threads)
    rates = (train.labels * train.weights).sum(0) / train.weights.sum(0)
    ours, const = held_out_logloss(model, test, rates)
    for name, a, b in zip(model.task_names, ours, const):
        assert a < 0.9 * b, f"{name}: held-out log loss {a:.4f} does not beat the constant predictor's {b:.4f}"
