"""The CLI: one-line errors without traceback, and a real fit on census-income."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recsys_mtl.cli", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_missing_pipeline_file(tmp_path: Path) -> None:
    msg = one_line_error(cli("fit", str(tmp_path / "none.yaml")))
    assert "none.yaml: file not found" in msg


def test_malformed_pipeline(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspec: [unclosed\n")
    assert "bad.yaml (line" in one_line_error(cli("fit", str(bad)))


def test_unknown_model_is_one_line(tmp_path: Path) -> None:
    msg = one_line_error(cli("fit", "pipelines/synthetic_mmoe.yaml", "--set", "model.name=nope", "--set", f"data.cache_dir={tmp_path}", "--runs-dir", str(tmp_path / "runs")))
    assert "model.name: unknown model 'nope'" in msg
    assert not (tmp_path / "runs").exists()


def test_missing_data_column_names_it(tmp_path: Path) -> None:
    spec = (ROOT / "feature_specs" / "synthetic.yaml").read_text().replace("{name: num0, kind: numeric}", "{name: missing_col, kind: numeric}")
    (tmp_path / "spec.yaml").write_text(spec)
    msg = one_line_error(cli("validate", "pipelines/synthetic_mmoe.yaml", "--data", "--set", f"spec={tmp_path / 'spec.yaml'}", "--set", f"data.cache_dir={tmp_path}"))
    assert "column 'missing_col' named in the spec is missing from the data" in msg


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = cli("--debug", "fit", str(tmp_path / "none.yaml"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_list_shows_registries() -> None:
    out = json.loads(cli("list", "--json").stdout)
    assert "mmoe" in out["models"] and "equal" in out["balancing"]


def test_census_fit_from_cli(tmp_path: Path, census_dir: Path) -> None:
    proc = cli(
        "fit", "pipelines/census_mmoe.yaml", "--runs-dir", str(tmp_path),
        "--set", f"data.path={census_dir}", "--set", "trainer.max_epochs=1", "--set", "trainer.batch_size=2048",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = next(tmp_path.iterdir())
    m = json.loads((run / "metrics.json").read_text())
    # one epoch already separates both tasks well above chance
    assert m["test"]["income/auc"] > 0.88 and m["test"]["marital/auc"] > 0.97
    pre = json.loads((run / "preprocessing.json").read_text())
    assert "education" not in pre["tables"] and "marital_stat" not in pre["tables"]
    assert "test:" in proc.stdout and "income/auc" in proc.stdout
