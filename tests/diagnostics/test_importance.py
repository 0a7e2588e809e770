"""Permutation importance: a feature the model ignores scores exactly 0, the one it reads scores
high, per task; ``recsys-mtl report --importance`` writes the table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from recsys_mtl.cli import main
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.diagnostics.importance import feature_columns, permutation_importance
from tests.support.synthetic import synthetic_spec
from tests.support.export import make_run


class ReadsOneColumnPerTask(nn.Module):
    """task0 = 3·num0 (standardized), task1 = whether cat0 is its most frequent value."""

    def __init__(self, num_col: int, cat_col: int):
        super().__init__()
        self.num_col, self.cat_col = num_col, cat_col

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"task0": 3 * batch["numeric"][:, self.num_col], "task1": (batch["categorical"][:, self.cat_col] == 2).float() * 4 - 2}


def test_importance_finds_the_feature_each_task_reads() -> None:
    spec = synthetic_spec(2)
    df = generate(SyntheticConfig(rows=1500, num_tasks=2, seed=4))
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df)
    cols = feature_columns(pre.layout)
    assert len(cols["num0"]["numeric"]) == 2  # the value and its missing indicator move together
    model = ReadsOneColumnPerTask(cols["num0"]["numeric"][0], cols["cat0"]["categorical"][0])
    # labels the model predicts perfectly (baseline AUC 1), so shuffling what it reads must hurt
    with torch.no_grad():
        out = model(table.columns())
    table.labels = torch.stack([(out["task0"] > 0).float(), (out["task1"] > 0).float()], dim=1)
    result = permutation_importance(model, spec.tasks, pre.layout, table, repeats=2)
    imp = result["importance"]
    assert result["metric"] == {"task0": "auc", "task1": "auc"}
    assert result["baseline"] == {"task0": pytest.approx(1.0), "task1": pytest.approx(1.0)}
    assert list(imp["task0"])[0] == "num0" and imp["task0"]["num0"]["mean"] > 0.3
    assert list(imp["task1"])[0] == "cat0" and imp["task1"]["cat0"]["mean"] > 0.1
    for feature in ("num1", "cat3", "tags", "num5"):  # never read: exactly no change
        assert imp["task0"][feature]["mean"] == 0.0 and imp["task1"][feature]["mean"] == 0.0
    assert imp["task1"]["num0"]["mean"] == 0.0 and imp["task0"]["cat0"]["mean"] == 0.0


def test_cli_report_importance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, synthetic_spec(2), generate(SyntheticConfig(rows=600, num_tasks=2, seed=1)), "shared_bottom")
    assert main(["report", str(run), "--importance", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| feature | task0 (auc drop) | task1 (auc drop) |" in printed
    result = json.loads((run / "report" / "importance.json").read_text())
    assert result["split"] == "valid" and set(result["importance"]) == {"task0", "task1"}
    assert len(result["importance"]["task0"]) == 13  # every feature of the synthetic spec
    assert (run / "report" / "importance.png").stat().st_size > 1000
