"""Checks every expert model must pass, shared by test_ple / test_home / test_adatt / test_exclusivity."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from recsys_mtl.data.tensors import Batch, features_only
from recsys_mtl.models import MultiTaskModel, build_model
from recsys_mtl.nn.blocks import Gate
from tests.conftest import make_context


def rows(batch: Batch, idx: Any) -> Batch:
    return {k: v[idx] for k, v in batch.items()}


def check_shapes(name: str, params: dict[str, Any], num_tasks: int) -> None:
    ctx, table = make_context(num_tasks, rows=48)
    out = build_model(name, params, ctx)(features_only(table.columns()))
    assert list(out) == [f"task{k}" for k in range(num_tasks)]
    assert all(v.shape == (48,) and v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())


def check_gradients(name: str, params: dict[str, Any]) -> MultiTaskModel:
    """Every parameter (experts, gates, feature gates, towers, encoder) gets a non-zero gradient."""
    ctx, table = make_context(3, rows=256)
    model = build_model(name, params, ctx)
    out = model(features_only(table.columns()))
    sum(v.pow(2).mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing
    return model


def check_gates_are_distributions(name: str, params: dict[str, Any]) -> None:
    ctx, table = make_context(3, rows=64)
    model = build_model(name, params, ctx)
    model(features_only(table.columns()))
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    assert gates
    for gate in gates:
        w = gate.last_weights
        assert w is not None and w.shape[0] == 64 and bool((w >= 0).all())
        assert torch.allclose(w.sum(-1), torch.ones(64), atol=1e-6)


def check_batch_independence(name: str, params: dict[str, Any]) -> None:
    ctx, table = make_context(2, rows=200)
    model = build_model(name, params, ctx)
    full = features_only(table.columns())
    model.train()
    model(full)  # one training pass so BatchNorm running statistics are not the initial ones
    model.eval()
    with torch.no_grad():
        alone = model(rows(full, slice(0, 10)))
        mixed = model({k: torch.cat([v[:10], v[100:]]) for k, v in full.items()})
    for task in alone:
        assert torch.allclose(alone[task], mixed[task][:10], atol=1e-5)


def check_fit_beats_constant(name: str, params: dict[str, Any], steps: int = 80) -> None:
    """A short fit on synthetic data has lower held-out log loss than the base rate, per task."""
    threads = torch.get_num_threads()
    # one thread: on a shared, oversubscribed machine intra-op threads spin-wait and run ~8x slower
    torch.set_num_threads(1)
    try:
        _fit_and_compare(name, params, steps)
    finally:
        torch.set_num_threads(threads)


def _fit_and_compare(name: str, params: dict[str, Any], steps: int) -> None:
    torch.manual_seed(0)
    ctx, table = make_context(2, rows=2400, seed=3)
    cols = table.columns()
    train, test = rows(cols, slice(0, 2000)), rows(cols, slice(2000, None))
    model = build_model(name, params, ctx)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, 2000, (128,), generator=gen)
        b = rows(train, idx)
        out = model(features_only(b))
        loss = sum(F.binary_cross_entropy_with_logits(out[f"task{t}"], b["labels"][:, t]) for t in range(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(features_only(test))
    for t in range(2):
        y = test["labels"][:, t]
        base = train["labels"][:, t].mean().clamp(1e-4, 1 - 1e-4)
        const = F.binary_cross_entropy(base.expand_as(y), y)
        fitted = F.binary_cross_entropy_with_logits(out[f"task{t}"], y)
        assert fitted < const * 0.9, (t, float(fitted), float(const))


class _Flat(torch.nn.Module):
    """Positional tensors in, a tuple of task logits out: the shape exporters expect."""

    def __init__(self, model: MultiTaskModel, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(dict(zip(self.keys, xs)))
        return tuple(out[t] for t in self.model.task_names)


def check_onnx_export(name: str, params: dict[str, Any]) -> None:
    """Exports (TorchScript exporter, dynamic batch) and onnxruntime agrees on another batch size."""
    ctx, table = make_context(2, rows=64)
    model = build_model(name, params, ctx)
    cols = features_only(table.columns())
    model.train()
    model(cols)  # non-trivial BatchNorm statistics
    model.eval()
    keys = sorted(cols)
    buf = io.BytesIO()
    torch.onnx.export(
        _Flat(model, keys).eval(),  # the exporter restores the wrapper's mode on everything inside it
        tuple(cols[k][:16] for k in keys),
        buf,
        dynamo=False,
        input_names=keys,
        output_names=model.task_names,
        dynamic_axes={k: {0: "batch"} for k in [*keys, *model.task_names]},
    )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: cols[k][:40].numpy() for k in keys})
    with torch.no_grad():
        want = model(rows(cols, slice(0, 40)))
    for t, g in zip(model.task_names, got):
        np.testing.assert_allclose(g, want[t].numpy(), atol=1e-4)
