"""Calibration: ECE and ratio by hand, calibrators recover a known distortion, fitting never
reads the test split, and the calibrator is baked into the exported graph with parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.export import export_run
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.export.preprocess_graph import raw_inputs
from recsys_mtl.spec.features import Task
from recsys_mtl.train.calibration import calibration_report, fit_calibration, predict_logits, reliability
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import load_run
from tests.support.synthetic import make_context
from tests.support.export import held_out
from tests.support.pipelines import small_pipeline


def test_reliability_by_hand() -> None:
    probs = np.array([0.1, 0.1, 0.9, 0.9])
    labels = np.array([0, 1, 1, 1])
    r = reliability(probs, labels, bins=10)
    # bin of 0.1: mean 0.1, rate 0.5; bin of 0.9: mean 0.9, rate 1.0 → ECE = (2·0.4 + 2·0.1) / 4
    assert r["ece"] == pytest.approx(0.25)
    assert r["ratio"] == pytest.approx(0.5 / 0.75)
    assert r["bins"]["count"][1] == 2 and r["bins"]["count"][9] == 2


def _table(y: torch.Tensor) -> EncodedTable:
    n = y.shape[0]
    return EncodedTable(torch.zeros(n, 0, dtype=torch.long), torch.zeros(n, 0), {}, y.unsqueeze(1), torch.ones(n, 1))


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibrators_recover_a_known_distortion(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, generator=g) * 2
    y = torch.bernoulli(torch.sigmoid(z), generator=g)
    distorted = 3 * z + (0.0 if method == "temperature" else 1.0)  # overconfident (and biased)
    task = [Task(name="t", label="y")]
    fitted = fit_calibration(task, {"t": distorted}, _table(y), method)["t"]
    assert fitted["a"] == pytest.approx(1 / 3, rel=0.06)
    if method == "platt":
        assert fitted["b"] == pytest.approx(-1 / 3, abs=0.06)
    before = reliability(torch.sigmoid(distorted).numpy(), y.numpy())["ece"]
    after = reliability(torch.sigmoid(distorted * fitted["a"] + fitted["b"]).numpy(), y.numpy())["ece"]
    assert after < before / 3


def test_calibration_fitted_on_validation_never_reads_test() -> None:
    ctx, table = make_context(2, rows=600)
    from recsys_mtl.models import build_model

    model = build_model("mmoe", {"num_experts": 2}, ctx)
    valid = EncodedTable(table.categorical[:300], table.numeric[:300], {k: v[:300] for k, v in table.sequences.items()},
                         table.labels[:300], table.weights[:300])
    test = EncodedTable(table.categorical[300:], table.numeric[300:], {k: v[300:] for k, v in table.sequences.items()},
                        table.labels[300:], table.weights[300:])
    alone = calibration_report(model, ctx.tasks, valid, None, "platt")
    # a test split with inverted labels and another model input changes what is reported on
    # test, never the fitted calibrator
    flipped = EncodedTable(test.categorical, test.numeric.flip(0), test.sequences, 1 - test.labels, test.weights)
    with_test = calibration_report(model, ctx.tasks, valid, flipped, "platt")
    assert with_test["params"] == alone["params"] and with_test["fitted_on"] == "val"
    assert with_test["raw"]["val"] == alone["raw"]["val"]
    assert set(with_test["calibrated"]) == {"val", "test"}


@pytest.mark.slow
def test_fit_writes_calibration_and_export_bakes_it_in(tmp_path: Path) -> None:
    cfg, spec = small_pipeline(tmp_path, "calibration=platt", "trainer.max_epochs=2")
    run_dir = fit(cfg, spec).run_dir
    report = json.loads((run_dir / "calibration.json").read_text())
    assert (run_dir / "reliability.png").stat().st_size > 1000
    assert report["method"] == "platt" and set(report["params"]) == {"task0", "task1"}
    for split in ("val", "test"):
        assert 0 <= report["raw"][split]["task0"]["ece"] < 0.5 and report["raw"][split]["task0"]["ratio"] > 0
    # calibrating on validation cannot make validation log loss worse, so ECE there stays small
    assert report["calibrated"]["val"]["task0"]["ece"] < 0.1
    out = export_run(run_dir, tmp_path / "export", parity_rows=200, test=held_out(200))
    assert out.metadata["parity"]["max_abs_diff"] <= 1e-5
    assert out.metadata["calibration"]["params"] == report["params"]
    # the served probability is sigmoid(a·z + b) of the model's raw logit
    run = load_run(run_dir)
    rows = held_out(200)
    logits = predict_logits(run.model, run.preprocessor.transform(rows))
    session = ort.InferenceSession(str(out.out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    served = session.run(None, raw_feed(raw_inputs(run.preprocessor), rows))
    for i, task in enumerate(("task0", "task1")):
        p = report["params"][task]
        expected = torch.sigmoid(logits[task] * p["a"] + p["b"]).numpy()
        assert np.abs(served[i] - expected).max() <= 1e-5
