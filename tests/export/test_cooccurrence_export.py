"""The sequence recipe's spec (``match`` + ``cooccurrence`` with kernel outputs) exported end to end:
ONNX with its preprocessing graph scores raw rows as torch does after the polars transform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys_mtl.export import export_run
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_kernel_outputs_export_within_parity(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_sequences_match.yaml", [
        "data.rows=1500", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=1", "trainer.batch_size=256",
        f"runs_dir={tmp_path / 'runs'}",
    ])
    cooc = next(f for f in spec.features if f.name == "history_cooc")
    assert "kernels" in cooc.chosen  # type: ignore[attr-defined]
    run_dir = fit(cfg, spec).run_dir
    state = json.loads((run_dir / "preprocessing.json").read_text())
    kernels = [c for c in state["numeric"] if c.startswith("history_cooc.kernel")]
    assert len(kernels) == len(cooc.kernels.mu)  # type: ignore[attr-defined]
    result = export_run(run_dir, tmp_path / "export", parity_rows=200)
    parity = result.metadata["parity"]
    assert parity["rows"] == 200 and parity["max_abs_diff"] <= 1e-5
