"""Numeric embeddings in the flat encoder: widths, train-quantile bins, errors, ONNX parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rtdl_num_embeddings import PiecewiseLinearEmbeddings

from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import SpecError
from recsys_mtl.export import export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig, quantile_bins
from tests.support.synthetic import synthetic_spec
from tests.support.export import held_out, make_run


@pytest.mark.parametrize("kind", ["linear", "periodic", "piecewise_linear"])
def test_flat_encoder_embeds_each_value_and_passes_indicators(fitted, kind: str) -> None:
    pre, table = fitted
    lay = pre.layout
    plain = FeatureEncoder(lay)
    enc = FeatureEncoder(lay, NumericEmbeddingConfig(kind=kind, d_embedding=5, n_bins=8))
    n_values, n_ind = len(lay.numeric), len(lay.indicators)
    assert n_values and n_ind
    assert enc.output_dim == plain.output_dim + n_values * 4
    batch = {"categorical": table.categorical[:16], "numeric": table.numeric[:16], **{f"seq.{k}": v[:16] for k, v in table.sequences.items()}}
    out = enc(batch)
    assert out.shape == (16, enc.output_dim)
    # the indicators are the last columns, unchanged
    torch.testing.assert_close(out[:, -n_ind:], table.numeric[:16, n_values:])


def test_piecewise_linear_bins_are_the_train_quantiles(fitted) -> None:
    pre, table = fitted
    lay = pre.layout
    assert lay.numeric_quantiles is not None and len(lay.numeric_quantiles) == len(lay.numeric)
    enc = FeatureEncoder(lay, NumericEmbeddingConfig(kind="piecewise_linear", n_bins=4, d_embedding=3))
    assert isinstance(enc.numeric_embedding, PiecewiseLinearEmbeddings)
    values = table.numeric[:, : len(lay.numeric)]
    for i, q in enumerate(lay.numeric_quantiles):
        edges = quantile_bins(q, 4)
        expect = torch.quantile(values[:, i].double(), torch.linspace(0, 1, 5, dtype=torch.float64)).float()
        torch.testing.assert_close(edges, torch.unique(expect), atol=1e-4, rtol=0)


def test_constant_column_gets_one_finite_bin() -> None:
    edges = quantile_bins([2.0] * 65, 16)
    assert edges.tolist() == [2.0, 3.0]


def test_piecewise_linear_without_quantiles_is_a_clear_error(fitted) -> None:
    pre, _ = fitted
    lay = pre.layout
    stale = type(lay)(categorical=lay.categorical, numeric=lay.numeric, indicators=lay.indicators,
                      sequences=lay.sequences, tables=lay.tables, numeric_quantiles=None)
    with pytest.raises(SpecError, match="piecewise_linear needs train quantiles"):
        FeatureEncoder(stale, NumericEmbeddingConfig(kind="piecewise_linear"))


def test_every_flat_model_takes_numeric_embeddings(fitted) -> None:
    pre, table = fitted
    spec = synthetic_spec(2)
    ctx = model_context(pre.layout, spec.tasks, {"numeric_embedding": {"kind": "piecewise_linear", "n_bins": 8, "d_embedding": 4}})
    batch = {"categorical": table.categorical[:8], "numeric": table.numeric[:8], **{f"seq.{k}": v[:8] for k, v in table.sequences.items()}}
    for name in ["shared_bottom", "mmoe", "ple", "home", "adatt", "stem"]:
        model = build_model(name, {}, ctx)
        assert isinstance(model.encoder.numeric_embedding, PiecewiseLinearEmbeddings), name
        out = model(batch)
        assert set(out) == {"task0", "task1"} and out["task0"].shape == (8,), name


@pytest.mark.slow
@pytest.mark.parametrize(("model", "kind"), [("mmoe", "piecewise_linear"), ("shared_bottom", "periodic")])
def test_onnx_export_parity_with_numeric_embeddings(tmp_path: Path, model: str, kind: str) -> None:
    spec = synthetic_spec(2)
    train = generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1))
    encoder = {"numeric_embedding": {"kind": kind, "n_bins": 8, "d_embedding": 4}}
    run = make_run(tmp_path, spec, train, model, encoder=encoder)
    meta = export_run(run, tmp_path / "export", test=held_out(200)).metadata
    assert meta["parity"]["max_abs_diff"] <= 1e-5
