"""Regression targets standardized inside the model: fitted on train, mapped back, in ONNX too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import export_run
from recsys_mtl.export.preprocess_graph import raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from tests.support.synthetic import synthetic_spec
from tests.support.export import held_out, make_run


def regression_spec() -> FeatureSpec:
    """task0 binary, task1 a regression label far from mean 0 / std 1."""
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["tasks"][1] = {"name": "task1", "label": "y1 * 4 + 10", "type": "regression"}
    return FeatureSpec.model_validate(raw)


@pytest.fixture(scope="module")
def data():
    spec = regression_spec()
    train = generate(SyntheticConfig(rows=1000, num_tasks=2, seed=1))
    return spec, train, Preprocessor.fit(spec, train)


def test_statistics_fitted_on_train_and_saved(data, tmp_path: Path) -> None:
    spec, train, pre = data
    y = (train["y1"] * 4 + 10).to_numpy()
    mean, std = pre.targets["task1"]
    assert mean == pytest.approx(y.mean(), rel=1e-6) and std == pytest.approx(y.std(), rel=1e-6)
    assert set(pre.targets) == {"task1"}  # binary tasks are not scaled
    pre.save(tmp_path / "p.json")
    assert Preprocessor.load(tmp_path / "p.json", spec).layout.targets == pre.layout.targets


def test_head_predicts_standardized_and_loss_is_on_that_scale(data) -> None:
    spec, train, pre = data
    table = pre.transform(train)
    ctx = ModelContext(layout=pre.layout, tasks=spec.tasks)
    torch.manual_seed(0)
    on = build_model("mmoe", {}, ctx).eval()
    torch.manual_seed(0)
    off = build_model("mmoe", {}, model_context(pre.layout, spec.tasks, {"standardize_targets": False})).eval()
    batch = {"categorical": table.categorical[:64], "numeric": table.numeric[:64],
             **{f"seq.{k}": v[:64] for k, v in table.sequences.items()}}
    mean, std = pre.targets["task1"]
    a, b = on(batch), off(batch)
    torch.testing.assert_close(a["task1"], b["task1"] * std + mean)
    torch.testing.assert_close(a["task0"], b["task0"])
    # the training loss: MSE of the standardized values, i.e. label-unit MSE / std²
    module = MultiTaskModule(on, spec.tasks, build_balancer("equal", {}, on.task_names), TrainerConfig())
    losses = module.task_losses(a, {"labels": table.labels[:64], "weights": table.weights[:64]})
    mse = torch.mean((a["task1"] - table.labels[:64, 1]) ** 2)
    torch.testing.assert_close(losses[1], mse / std**2, rtol=1e-4, atol=1e-6)
    # at initialisation predictions sit near the train mean, not near 0
    assert abs(float(a["task1"].detach().mean()) - mean) < 2 * std


@pytest.mark.slow
def test_standardized_regression_round_trips_through_onnx(data, tmp_path: Path) -> None:
    spec, train, pre = data
    run = make_run(tmp_path, spec, train, "mmoe")
    test = held_out(200)
    result = export_run(run, tmp_path / "export", test=test)
    assert result.metadata["parity"]["max_abs_diff"] <= 1e-5
    sess = ort.InferenceSession(str(result.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, raw_feed(raw_inputs(pre), test))))
    mean, std = pre.targets["task1"]
    # label units: the graph carries the mapping back (a head without it would centre on 0)
    assert abs(float(np.mean(out["task1"])) - mean) < std


def test_streaming_fit_gives_the_same_statistics(data, tmp_path: Path) -> None:
    from recsys_mtl.data.preprocess import Preprocessor

    spec, train, pre = data
    train.write_parquet(tmp_path / "train.parquet")
    streamed = Preprocessor.fit_files(spec, [tmp_path / "train.parquet"])
    np.testing.assert_allclose(streamed.targets["task1"], pre.targets["task1"], rtol=1e-9)
