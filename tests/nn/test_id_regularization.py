"""Rarity-aware id regularisation: the L2 touches only the rows a batch uses, each scaled by
1 / its train count; max-norm caps those rows; id dropout by count drops rare ids more."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.features.fitted import FIRST, MISSING, OOV
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.id_dropout import IdDropout, IdDropoutConfig
from tests.support.synthetic import synthetic_spec


def _batch(table, rows: int = 64) -> dict[str, torch.Tensor]:
    return {"categorical": table.categorical[:rows], "numeric": table.numeric[:rows],
            **{f"seq.{k}": v[:rows] for k, v in table.sequences.items()}}


def test_counts_are_fitted_in_vocabulary_order(fitted, synth_df) -> None:
    pre, _ = fitted
    t = pre.tables["cat0"]
    assert t.counts is not None and len(t.counts) == len(t.vocab)
    truth = synth_df["cat0"].cast(str).value_counts()
    by_value = dict(zip(truth["cat0"].to_list(), truth["count"].to_list()))
    assert t.counts == [by_value[v] for v in t.vocab]
    assert t.counts == sorted(t.counts, reverse=True)  # vocabularies are ordered by count
    assert pre.layout.table_counts["cat0"] == t.counts


def test_l2_gradient_only_on_batch_rows_scaled_by_inverse_count(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    lam = 0.5
    ctx = model_context(pre.layout, spec.tasks, {"id_regularization": {"l2": lam, "features": ["cat0"]}})
    model = build_model("mmoe", {}, ctx)
    batch = _batch(table, 40)
    penalty = model.regularization(batch)
    assert penalty is not None
    penalty.backward()
    weight = model.encoder.embeddings["cat0"].weight
    col = [f for f, _ in pre.layout.categorical].index("cat0")
    used = set(batch["categorical"][:, col].tolist())
    counts = pre.tables["cat0"].counts
    expected = torch.zeros_like(weight)
    for row in used:
        if row >= FIRST:
            expected[row] = 2 * lam * weight[row].detach() / counts[row - FIRST]
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, expected)
    untouched = [r for r in range(weight.shape[0]) if r not in used]
    assert weight.grad[untouched].abs().sum() == 0
    # the value: λ Σ ||w_j||² / n_j over the distinct rows (each once, however often it occurs)
    value = sum(float(weight[r].detach().pow(2).sum()) / counts[r - FIRST] for r in used if r >= FIRST)
    assert float(penalty.detach()) == pytest.approx(lam * value, rel=1e-5)
    # no other table was touched
    assert model.encoder.embeddings["cat1"].weight.grad is None


def test_default_features_are_the_counted_tables_and_sequences(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_regularization": {"l2": 1.0, "power": 0.0}}))
    tables = set(model.encoder.reg_tables)
    assert tables == set(pre.layout.table_counts) and "tags" in tables
    model.regularization(_batch(table)).backward()
    seq = _batch(table)["seq.tags"]
    grad = model.encoder.embeddings["tags"].weight.grad
    used = {r for r in seq.unique().tolist() if r >= FIRST}
    assert {r for r in range(grad.shape[0]) if grad[r].abs().sum() > 0} == used  # padding and OOV untouched


def test_max_norm_caps_only_the_rows_the_batch_used(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_regularization": {"max_norm": 0.01, "features": ["cat0"]}}))
    weight = model.encoder.embeddings["cat0"].weight
    before = weight.detach().clone()
    batch = _batch(table, 10)
    model.after_step(batch)
    col = [f for f, _ in pre.layout.categorical].index("cat0")
    used = set(batch["categorical"][:, col].tolist())
    norms = weight.detach().norm(dim=-1)
    for r in range(weight.shape[0]):
        if r in used:
            assert norms[r] <= 0.01 + 1e-6
        else:
            torch.testing.assert_close(weight[r].detach(), before[r])
    assert model.regularization(batch) is None  # l2 = 0: no penalty term


def test_unknown_feature_is_named(fitted) -> None:
    pre, _ = fitted
    with pytest.raises(SpecError, match="encoder.id_regularization.features.*nope"):
        build_model("mmoe", {}, model_context(pre.layout, synthetic_spec(2).tasks, {"id_regularization": {"l2": 1.0, "features": ["nope"]}}))


def test_id_dropout_by_count_drops_rare_ids_more() -> None:
    counts = [1000, 10]  # row FIRST: frequent, row FIRST + 1: rare
    drop = IdDropout([FIRST + 2], ["user"], IdDropoutConfig(rate=0.4, min_vocab=1, rare_count=100), [counts])
    torch.manual_seed(0)
    ids = torch.tensor([FIRST, FIRST + 1, MISSING]).repeat(40000).view(-1, 1)
    out = drop(ids)
    share = [(out[ids[:, 0] == r] == OOV).float().mean().item() for r in (FIRST, FIRST + 1)]
    assert abs(share[0] - 0.4 * 100 / 1000) < 0.01  # frequent: rate · rare_count / n
    assert abs(share[1] - 0.4) < 0.01  # rare (n ≤ rare_count): the full rate
    assert (out[ids == MISSING] == MISSING).all()
    seq = torch.tensor([[FIRST, FIRST + 1, MISSING]]).repeat(40000, 1)
    out = drop.column(seq, 0)
    assert abs((out[:, 1] == OOV).float().mean().item() - 0.4) < 0.01 and (out[:, 2] == MISSING).all()
