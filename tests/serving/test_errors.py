"""Server-side failures: a 500 says ``Connection: close``; a broken export folder is one error line
naming the file (exit status 2); /metadata hides paths; compressed Arrow streams within the limit work."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import ServeSettings, create_app
from serving.arrow_ipc import read_stream
from serving.cli import main
from serving.metadata import public_metadata
from serving.predictor import Predictor
from serving.schema import RequestError
from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import BLOCKER, arrow_bytes, good_table, with_column


def test_internal_error_is_a_json_500_that_closes_the_connection(export_dir: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    predictor = Predictor(export_dir, intra_threads=1)

    def broken(feed: Any) -> Any:
        raise RuntimeError("model exploded")

    predictor.predict = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR), TestClient(create_app(predictor, ServeSettings(max_wait_ms=0.5))) as client:
        r = client.post("/predict", json=good_row())
        assert r.status_code == 500 and r.headers["connection"] == "close"
        assert r.json() == {"error": "internal server error", "code": "internal"}  # no internals leak
        assert client.get("/health").status_code == 200
    assert "model exploded" in caplog.text  # the traceback is in the log, once
    assert caplog.text.count("Traceback") == 1


def test_public_metadata_replaces_absolute_paths() -> None:
    meta = {"run_dir": "/home/me/runs/census-1", "nested": [{"p": "C:\\Users\\me\\x.csv"}, "relative/ok", 3],
            "name": "census"}
    assert public_metadata(meta) == {"run_dir": "census-1", "nested": [{"p": "x.csv"}, "relative/ok", 3], "name": "census"}


def _meta(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "metadata.json"
        meta = json.loads(path.read_text())
        out = edit(meta)
        path.write_text(json.dumps(meta if out is None else out))
    return apply


BROKEN_EXPORTS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("garbage-onnx", lambda d: (d / "model.onnx").write_bytes(b"\x00garbage" * 100), "model.onnx", "not a loadable ONNX model"),
    ("empty-onnx", lambda d: (d / "model.onnx").write_bytes(b""), "model.onnx", "not a loadable ONNX model"),
    ("truncated-metadata", lambda d: (d / "metadata.json").write_text((d / "metadata.json").read_text()[:200]),
     "metadata.json", "not valid JSON"),
    ("metadata-not-utf8", lambda d: (d / "metadata.json").write_bytes(b"\xff\xfe{}"), "metadata.json", "not UTF-8"),
    ("metadata-a-list", _meta(lambda m: [m]), "metadata.json", "expected a JSON object"),
    ("metadata-deeply-nested", lambda d: (d / "metadata.json").write_text("[" * 100_000 + "]" * 100_000),
     "metadata.json", "not valid JSON"),
    ("no-inputs", _meta(lambda m: m.pop("inputs") and None), "metadata.json", "'inputs' must be a non-empty list"),
    ("unknown-kind", _meta(lambda m: m["inputs"][2].update(kind="image")), "metadata.json", "inputs[2] ('num2'): 'kind'"),
    ("sequence-without-max-len", _meta(lambda m: m["inputs"][-1].pop("max_len") and None), "metadata.json",
     "inputs[12] ('tags'): 'max_len' must be a positive integer"),
    ("file-outside-folder", _meta(lambda m: m["files"].update(fp32="../../etc/passwd")), "metadata.json",
     "expected a file name inside the export folder"),
    ("file-missing", _meta(lambda m: m["files"].update(fp32="gone.onnx")), "metadata.json", "gone.onnx is missing"),
    ("renamed-input", _meta(lambda m: m["inputs"][0].update(name="age")), "model.onnx", "do not match metadata.json"),
    ("dtype-disagrees-with-kind", _meta(lambda m: m["inputs"][0].update(kind="categorical")), "metadata.json",
     "inputs[0] ('num0'): 'dtype' must be 'string' for a categorical input"),
    ("max-len-on-a-numeric-input", _meta(lambda m: m["inputs"][0].update(max_len=4)), "metadata.json",
     "inputs[0] ('num0'): 'max_len' applies to sequence inputs only"),
    ("kind-changed", _meta(lambda m: m["inputs"][0].update(kind="categorical", dtype="string", missing="")), "model.onnx",
     "scoring all-missing rows failed"),
]


@pytest.mark.parametrize(("damage", "file", "text"), [c[1:] for c in BROKEN_EXPORTS], ids=[c[0] for c in BROKEN_EXPORTS])
def test_broken_export_is_one_error_line_naming_the_file(export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                         damage: Callable[[Path], None], file: str, text: str) -> None:
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    damage(folder)
    assert main([str(folder), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {folder / file}: ") and text in err, err


@pytest.mark.slow
def test_broken_export_from_the_command_line(export_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    (folder / "model.onnx").write_bytes(b"not onnx")
    proc = subprocess.run([sys.executable, str(BLOCKER), "-m", "serving", str(folder)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: {folder / 'model.onnx'}: not a loadable ONNX model")


def test_compressed_arrow_within_the_limit_is_read(export_dir: Path) -> None:  # noqa: F811
    table = good_table(5)
    for codec in ("lz4", "zstd"):
        assert read_stream(arrow_bytes(table, codec), 1 << 20).equals(table)
    big = with_column(table, "cat2", good_table(5).column("cat2").cast("large_string"))
    with pytest.raises(RequestError, match="decodes to more than the limit") as err:
        read_stream(arrow_bytes(big, "zstd"), 100)
    assert err.value.status == 413
    predictor = Predictor(export_dir, intra_threads=1, warmup=False)
    feed, _ = predictor.schema.from_arrow(read_stream(arrow_bytes(table, "lz4"), 1 << 20), 10)
    expected = predictor.predict_rows([good_row(i) for i in range(5)])
    np.testing.assert_allclose(predictor.predict(feed)["task0"], expected["task0"], atol=1e-7)
