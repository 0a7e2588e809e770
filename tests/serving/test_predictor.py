"""The predictor loads and scores with torch and recsys_mtl unimportable; provider choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.predictor import CPU, Predictor, choose_providers
from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import BLOCKER

SNIPPET = """
import json, sys
from serving import Predictor
p = Predictor(sys.argv[1], variant=sys.argv[2], intra_threads=1)
rows = json.loads(sys.argv[3])
out = p.predict_rows(rows)
assert not any(m.split(".")[0] in ("torch", "recsys_mtl") for m in sys.modules), "torch imported"
print(json.dumps({k: v.tolist() for k, v in out.items()}))
"""


def _blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BLOCKER), *args], capture_output=True, text=True, timeout=120)


def test_blocker_really_blocks_torch() -> None:
    proc = _blocked("-c", "import torch")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_scores_without_torch(export_dir: Path, variant: str) -> None:  # noqa: F811
    rows = [good_row(i) for i in range(6)]
    proc = _blocked("-c", SNIPPET, str(export_dir), variant, json.dumps(rows))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = Predictor(export_dir, variant=variant, warmup=False).predict_rows(rows)
    for task, values in expected.items():
        np.testing.assert_allclose(got[task], values, atol=1e-7)


def test_provider_choice_and_warmup(export_dir: Path) -> None:  # noqa: F811
    assert choose_providers("cpu") == [CPU]
    assert choose_providers("auto")[-1] == CPU
    with pytest.raises(ValueError, match="provider must be one of"):
        choose_providers("tpu")
    p = Predictor(export_dir, provider="cpu", intra_threads=1, warmup=False)
    assert not p.ready and p.providers == [CPU]
    assert p.warmup() > 0 and p.ready
    with pytest.raises(ValueError, match="variant 'fp16' not in this export"):
        Predictor(export_dir, variant="fp16")


def test_predict_table_scores_polars_and_arrow_like_json_rows(export_dir: Path) -> None:  # noqa: F811
    from tests.support.export import held_out

    p = Predictor(export_dir, intra_threads=1, warmup=False)
    df = held_out(50)  # raw columns with nulls, OOV values and labels (extra columns are ignored)
    from_polars = p.predict_table(df)
    from_arrow = p.predict_table(df.to_arrow())
    rows = df.select(sorted(p.schema.names)).to_dicts()
    from_json = p.predict_rows(rows)
    for task in p.tasks:
        assert from_polars[task].shape == (50,)
        np.testing.assert_allclose(from_polars[task], from_arrow[task], atol=0)
        np.testing.assert_allclose(from_polars[task], from_json[task], atol=1e-6)
