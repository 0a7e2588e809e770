"""Every row of the model table (every registered model and its param variants) exports with a
dynamic batch axis and matches torch on raw columns."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys_mtl.export.exporter import parity
from recsys_mtl.export.preprocess_graph import raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.spec import FeatureSpec
from tests.support.synthetic import synthetic_spec
from tests.support.export import export_session, funnel_spec, held_out
from tests.support.model_table import Variant, cases


@pytest.fixture(scope="module")
def held() -> dict[int, pl.DataFrame]:
    """held_out(rows) for the row counts below, generated once for the 20 rows of the table (read only)."""
    return {rows: held_out(rows) for rows in (1, 300, 777)}


@pytest.mark.slow
@pytest.mark.parametrize("name, variant", cases())
def test_parity_for_every_registered_model(name: str, variant: Variant, held: dict[int, pl.DataFrame]) -> None:
    spec = funnel_spec(synthetic_spec(2))  # a funnel, so esmm / aitm build too; others ignore it
    head, session, pre = export_session(spec, name, variant.params)
    assert [i.name for i in session.get_inputs()] == [r.name for r in raw_inputs(pre)]
    assert [o.name for o in session.get_outputs()] == ["task0", "task1"]
    diffs = parity(head, session, pre, held[300])
    assert max(diffs.values()) <= 1e-5, diffs
    # dynamic batch axis: one row and a batch larger than any seen at export
    for rows in (1, 777):
        out = session.run(None, raw_feed(raw_inputs(pre), held[rows]))
        assert all(o.shape == (rows,) for o in out)
        assert all(((o >= 0) & (o <= 1)).all() for o in out)  # probabilities


@pytest.mark.slow
def test_multiclass_and_regression_outputs() -> None:
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["tasks"] = [
        {"name": "click", "label": "label0"},
        {"name": "grade", "label": "CASE WHEN y0 > 0.5 THEN 2 WHEN y0 > -0.5 THEN 1 ELSE 0 END", "type": "multiclass", "num_classes": 3},
        {"name": "value", "label": "y1", "type": "regression"},
    ]
    spec = FeatureSpec.model_validate(raw)
    head, session, pre = export_session(spec, "mmoe")
    df = held_out(200)
    assert max(parity(head, session, pre, df).values()) <= 1e-5
    click, grade, value = session.run(None, raw_feed(raw_inputs(pre), df))
    assert grade.shape == (200, 3)
    np.testing.assert_allclose(grade.sum(axis=1), 1.0, atol=1e-6)  # softmax
    assert ((click > 0) & (click < 1)).all() and value.shape == (200,)
    with torch.no_grad():
        logits = head.model({k: v for k, v in pre.transform(df).columns().items() if k not in ("labels", "weights")})
    np.testing.assert_allclose(value, logits["value"].numpy(), atol=1e-5)  # regression: identity
