"""Id dropout trains the out-of-vocabulary row; evaluation is untouched."""

from __future__ import annotations

import torch

from recsys_mtl.features.fitted import MISSING, OOV
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.id_dropout import IdDropout, IdDropoutConfig
from tests.support.synthetic import synthetic_spec


def _batch(table, rows: int = 256) -> dict[str, torch.Tensor]:
    return {"categorical": table.categorical[:rows], "numeric": table.numeric[:rows],
            **{f"seq.{k}": v[:rows] for k, v in table.sequences.items()}}


def _oov_grad(fitted, id_dropout: dict) -> torch.Tensor:
    pre, table = fitted
    spec = synthetic_spec(2)
    torch.manual_seed(0)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_dropout": id_dropout}))
    model.train()
    out = model(_batch(table))
    (out["task0"].sum() + out["task1"].sum()).backward()
    return model.encoder.embeddings["cat0"].weight.grad[OOV]


def test_oov_row_gets_gradient_only_with_id_dropout(fitted) -> None:
    _, table = fitted
    col = [f for f, _ in fitted[0].layout.categorical].index("cat0")
    assert not (table.categorical[:, col] == OOV).any()  # a full vocabulary: no train id is OOV
    assert _oov_grad(fitted, {"features": {"cat0": 0.3}}).abs().sum() > 0
    assert _oov_grad(fitted, {"rate": 0.0}).abs().sum() == 0
    # the default only covers tables of >= 1000 rows; cat0 has a few dozen
    assert _oov_grad(fitted, {}).abs().sum() == 0


def test_drops_the_share_asked_keeps_missing_and_leaves_eval_alone(fitted) -> None:
    pre, table = fitted
    cfg = IdDropoutConfig(rate=0.25, min_vocab=1)
    rows = [pre.layout.tables[t][0] for _, t in pre.layout.categorical]
    drop = IdDropout(rows, [f for f, _ in pre.layout.categorical], cfg)
    torch.manual_seed(1)
    ids = torch.randint(2, 10, (20000, len(rows)))
    ids[:100] = MISSING
    out = drop(ids)
    assert (out[:100] == MISSING).all()
    share = (out[100:] == OOV).float().mean().item()
    assert abs(share - 0.25) < 0.01

    spec = synthetic_spec(2)
    model = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"id_dropout": {"rate": 0.5, "min_vocab": 1}}))
    model.eval()
    a, b = model(_batch(table, 64)), model(_batch(table, 64))
    torch.testing.assert_close(a["task0"], b["task0"])


def test_sequence_ids_are_dropped_too(fitted) -> None:
    pre, table = fitted
    drop = IdDropout([1000], ["tags"], IdDropoutConfig())
    torch.manual_seed(0)
    seq = table.sequences["tags"]
    out = drop.column(seq, 0)
    assert ((out == OOV) & (seq != OOV)).any()
    assert ((out == MISSING) == (seq == MISSING)).all()  # padding stays padding
