"""``recsys-mtl export`` on a real (tiny) run folder: files, metadata, Triton layout, loud failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest

from recsys_mtl.cli import main
from recsys_mtl.export import ExportError, export_run
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.errors import DataError
from recsys_mtl.train.run_folder import load_run
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from serving.contract import inputs_from_json
from serving.predictor import Predictor
from tests.support.export import delimited, held_out, separator_export_dir, shared_model_graphs  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def one_graph_per_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test here exports the same run folder. torch.onnx.export (seconds each) runs once per
    distinct scoring head (weights, dtype, names, calibration); each export_run still attaches the
    preprocessing graph, checks parity through the server's input path and writes its files."""
    with shared_model_graphs(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export_run")
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        "trainer.progress_bar=false", f"runs_dir={tmp / 'runs'}",
    ])
    return fit(cfg, spec).run_dir


def test_graph_sharing_nests_without_wrapping_itself(tmp_path_factory: pytest.TempPathFactory) -> None:
    """This module shares graphs, and so do the session exports built inside it (separator_export_dir):
    the inner context must be the outer one (a wrapper of the wrapper took one graph's lock twice and hung)."""
    from recsys_mtl.export import exporter

    outer = exporter.export_model
    assert getattr(outer, "shares_graphs", False)  # this module's autouse fixture is active
    with shared_model_graphs(tmp_path_factory):
        assert exporter.export_model is outer
    assert exporter.export_model is outer


@pytest.mark.slow
def test_cli_export_writes_models_metadata_and_triton_layout(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exports" / "tiny"
    assert main(["export", str(run_dir), "--out", str(out), "--int8", "--fp16", "--parity-rows", "100"]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and "int8: change vs fp32" in printed
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["tasks"] == ["task0", "task1"] and meta["model"] == "mmoe"
    assert len(meta["spec_hash"]) == 16 and meta["versions"]["onnxruntime"]
    assert meta["parity"]["max_abs_diff"] <= 1e-5 and meta["parity"]["rows"] == 100
    assert {i["name"]: i["dtype"] for i in meta["inputs"]}["cat0"] == "string"
    assert {i["name"]: i["dtype"] for i in meta["inputs"]}["num0"] == "float64"
    for variant in ("int8", "fp16"):
        info = meta["variants"][variant]
        assert (out / info["file"]).is_file()
        for task in ("task0", "task1"):
            # the quantised models rank rows almost as the float32 one does
            assert abs(info["change"][task]["auc"]) < 0.02
    config = (out / "triton" / "tiny" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and "dynamic_batching" in config
    assert 'name: "tags"' in config and "TYPE_STRING" in config and "TYPE_FP64" in config
    assert (out / "triton" / "tiny" / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    # the exported model scores raw held-out rows (nulls, OOV, empty lists) with no Python preprocessing
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    df = held_out(50)
    feed = {
        "cat0": df["cat0"].fill_null("").to_numpy().astype(object),
        **{i.name: np.zeros(50) for i in session.get_inputs() if i.type == "tensor(double)"},
    }
    for i in session.get_inputs():
        if i.name not in feed:
            feed[i.name] = np.full((50, 2) if i.name == "tags" else 50, "", dtype=object)
    probs = session.run(None, feed)
    assert [p.shape for p in probs] == [(50,), (50,)]


def test_parity_failure_is_loud_and_writes_nothing(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match="ONNX and torch disagree.*max abs difference"):
        export_run(run_dir, out, tolerance=-1.0, parity_rows=64, test=held_out(100))
    assert not out.exists() and not list(tmp_path.glob(".bad-*"))


def test_refuses_existing_output_and_incomplete_run(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    (tmp_path / "afile").write_text("x")

    def no_export(*args: object) -> None:
        raise AssertionError("the output folder is checked before the export starts")

    monkeypatch.setattr("recsys_mtl.export.exporter.export_model", no_export)
    with pytest.raises(ExportError, match="already exists"):
        export_run(run_dir, tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "keep me"
    with pytest.raises(ExportError, match=r"afile: is a file"):
        export_run(run_dir, tmp_path / "afile")
    with pytest.raises(ExportError, match=r"afile/e: cannot be created: .*afile is a file, not a folder"):
        export_run(run_dir, tmp_path / "afile" / "e")
    monkeypatch.undo()
    with pytest.raises(DataError, match="not a complete run folder .pipeline.yaml is missing"):
        load_run(tmp_path)
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_parity_goes_through_the_servers_input_path(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.schema

    served = serving.schema._arrow_numeric
    # a server that shifts one numeric column: what it feeds no longer matches what training saw
    monkeypatch.setattr(serving.schema, "_arrow_numeric",
                        lambda spec, col: served(spec, col) + (1.0 if spec.name == "num0" else 0.0))
    with pytest.raises(ExportError, match="ONNX and torch disagree"):
        export_run(run_dir, tmp_path / "shifted", parity_rows=64, test=held_out(100))
    monkeypatch.undo()
    assert export_run(run_dir, tmp_path / "ok", parity_rows=64, test=held_out(100)).metadata["parity"]["max_abs_diff"] <= 1e-5


def test_numbers_stored_as_text_are_sent_as_numbers(run_dir: Path, tmp_path: Path) -> None:
    import polars as pl

    # CSV data read as strings (census): training parses them, a client sends numbers; parity holds
    rows = held_out(100).with_columns(pl.col("num0").cast(pl.String), pl.col("cat0").cast(pl.Categorical))
    result = export_run(run_dir, tmp_path / "text", parity_rows=64, test=rows)
    assert result.metadata["parity"]["max_abs_diff"] <= 1e-5


def test_rows_the_server_refuses_fail_the_export_naming_the_column(run_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.schema

    def refuse(spec: object, col: object) -> None:
        raise TypeError("expected strings (or integers), got double")

    monkeypatch.setattr(serving.schema, "_arrow_categorical", refuse)
    with pytest.raises(ExportError, match=r"held-out parity rows: the server refuses these rows \(column 'cat0'\)"):
        export_run(run_dir, tmp_path / "refused", parity_rows=64, test=held_out(100))
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_delimited_sequence_scores_as_the_list(separator_export_dir: Path) -> None:  # noqa: F811
    meta = json.loads((separator_export_dir / "metadata.json").read_text())
    assert next(i for i in meta["inputs"] if i["name"] == "tags")["separator"] == "|"
    assert meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"]  # training's split = the server's, on text
    i = pl.int_range(pl.len())
    lists = held_out(40).with_columns(pl.col("tags").list.drop_nulls()).with_columns(
        tags=pl.when(i == 1).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(pl.col("tags")))
    text = delimited(lists)  # "t1 | t7", "" for the empty list, null kept
    assert text["tags"].null_count() > 0 and (text["tags"] == "").sum() > 0
    inputs = inputs_from_json(meta["inputs"])
    np.testing.assert_array_equal(raw_feed(inputs, text)["tags"], raw_feed(inputs, lists)["tags"])
    pred = Predictor(separator_export_dir, warmup=False)
    by_list, by_text = pred.predict_table(lists), pred.predict_table(text)
    by_rows = pred.predict_rows(text.select([i.name for i in inputs]).to_dicts())
    for task, want in by_list.items():
        np.testing.assert_array_equal(by_text[task], want)
        np.testing.assert_array_equal(by_rows[task], want)
    blank = pred.predict_table(text.with_columns(tags=pl.lit("")))  # the tags do move the scores
    assert not np.allclose(blank["task0"], by_list["task0"])
