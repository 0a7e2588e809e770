"""Expert diagnostics: statistics on known inputs, the training callback, and `recsys-mtl report`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from recsys_mtl.cli import main
from recsys_mtl.data.tensors import features_only
from recsys_mtl.diagnostics import DiagnosticsAccumulator, callback, has_experts, plot_diagnostics
from recsys_mtl.models import build_model
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from tests.support.synthetic import make_context

ROOT = Path(__file__).resolve().parents[2]


def _accumulate(name: str, params: dict, batches: int = 2, **kw: float) -> tuple[torch.nn.Module, dict]:
    ctx, table = make_context(2, rows=128)
    model = build_model(name, params, ctx).eval()
    acc = DiagnosticsAccumulator(model, **kw)
    cols = features_only(table.columns())
    with torch.no_grad():
        for b in range(batches):
            model({k: v[b * 64 : (b + 1) * 64] for k, v in cols.items()})
            acc.update()
    return model, acc.result()


def test_sparsity_counts_dead_experts() -> None:
    ctx, table = make_context(2, rows=64)
    model = build_model("mmoe", {"num_experts": 3, "expert_hidden": [8]}, ctx)
    with torch.no_grad():
        model.experts.biases[0][0].fill_(-1e4)  # ReLU expert 0: always exactly zero
    acc = DiagnosticsAccumulator(model)
    model(features_only(table.columns()))
    acc.update()
    e = acc.result()["experts"]["experts"]
    assert e["zero_fraction"][0] == 1.0 and e["near_zero_fraction"][0] == 1.0 and e["std"][0] == 0.0
    assert all(z < 1.0 for z in e["zero_fraction"][1:])
    out = model.experts.last_output
    assert e["zero_fraction"][1] == pytest.approx(float((out[:, 1] == 0).float().mean()), abs=1e-6)


def test_uniform_gate_has_full_entropy_and_usage_sums_to_one() -> None:
    ctx, table = make_context(2, rows=64)
    model = build_model("mmoe", {"num_experts": 4, "exclusivity": 0.5}, ctx)
    with torch.no_grad():
        for gate in model.gates:
            gate.proj.weight.zero_()
            gate.proj.bias.zero_()
    acc = DiagnosticsAccumulator(model)
    model(features_only(table.columns()))
    acc.update()
    res = acc.result()
    for name, g in res["gates"].items():
        # uniform over the 3 experts each task may use (one is exclusive to the other task)
        assert g["entropy"] == pytest.approx(math.log(3), abs=1e-5)
        assert g["normalized_entropy"] == pytest.approx(1.0, abs=1e-5)
        assert g["usage"] == pytest.approx({"own": 1 / 3, "group": 0.0, "shared": 2 / 3, "other": 0.0}, abs=1e-5)
    assert set(res["tasks"]) == {"task0", "task1"}


@pytest.mark.parametrize(
    ("name", "params", "kinds"),
    [
        ("ple", {"expert_hidden": [8]}, {"own", "shared"}),
        ("home", {"expert_hidden": [8], "groups": {"g": ["task0", "task1"]}}, {"own", "shared", "group"}),
        ("adatt", {"expert_hidden": [8]}, {"own", "other"}),
        ("mmoe", {"expert_hidden": [8]}, {"shared"}),
    ],
)
def test_every_moe_model_reports_usage(name: str, params: dict, kinds: set[str]) -> None:
    model, res = _accumulate(name, params)
    assert res["rows"] == 128 and res["experts"] and res["gates"]
    for task, usage in res["tasks"].items():
        assert sum(usage[k] for k in ("own", "group", "shared", "other")) == pytest.approx(1.0, abs=1e-5)
        assert {k for k in ("own", "group", "shared", "other") if usage[k] > 0} == kinds, task
        assert 0.0 < usage["normalized_entropy"] <= 1.0
    for bank in res["experts"].values():
        assert all(0.0 <= z <= 1.0 for z in bank["zero_fraction"] + bank["near_zero_fraction"])


def test_shared_bottom_has_nothing_to_diagnose() -> None:
    ctx, _ = make_context(2, rows=16)
    assert not has_experts(build_model("shared_bottom", {}, ctx))
    assert has_experts(build_model("ple", {}, ctx))


@pytest.mark.slow
def test_plot_writes_a_png(tmp_path: Path) -> None:
    _, res = _accumulate("home", {"expert_hidden": [8], "groups": {"g": ["task0"]}})
    png = plot_diagnostics(res, tmp_path / "d.png", "home")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_callback_logs_each_validation_and_report_reproduces_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = [
        "data.rows=1200",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=2",
        "trainer.batch_size=256",
        "trainer.progress_bar=false",
        f"runs_dir={tmp_path / 'runs'}",
        "model.name=ple",
        "model.params={expert_hidden: [8], tower_hidden: [8]}",
    ]
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", overrides)
    drawn: list[str] = []

    def counted(result: dict, path: Path, title: str = "") -> Path:  # type: ignore[type-arg]
        drawn.append(title)
        return plot_diagnostics(result, path, title)

    monkeypatch.setattr(callback, "plot_diagnostics", counted)
    run = fit(cfg, spec).run_dir
    # one drawing per fit: the selected checkpoint's, not first the last epoch's
    assert len(drawn) == 1 and "checkpoint best.ckpt" in drawn[0], drawn
    monkeypatch.undo()
    logged = json.loads((run / "diagnostics.json").read_text())
    assert [e["epoch"] for e in logged["epochs"]] == [0, 1]  # sanity-check pass not recorded
    assert logged["best"]["rows"] == 180 and logged["best"]["checkpoint"] == "best.ckpt"  # 15% of 1200 rows
    assert (run / "diagnostics.png").stat().st_size > 0
    assert "diag/task0/own" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]

    assert main(["report", str(run)]) == 0
    report = json.loads((run / "report" / "diagnostics.json").read_text())
    assert (run / "report" / "diagnostics.png").stat().st_size > 0
    # same checkpoint, same validation rows, eval mode: the same numbers as the callback's "best"
    for gate, stats in logged["best"]["gates"].items():
        assert report["gates"][gate]["mean_weight"] == pytest.approx(stats["mean_weight"], abs=1e-5)
    for task, usage in logged["best"]["tasks"].items():
        assert report["tasks"][task] == pytest.approx(usage, abs=1e-5)


def test_report_on_a_non_run_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a complete run folder (pipeline.yaml is missing)" in capsys.readouterr().err
