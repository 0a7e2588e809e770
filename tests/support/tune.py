"""Helpers for the tuning tests: a tiny synthetic pipeline file with a given ``tune`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT



def write_pipeline(tmp: Path, tune: dict[str, Any], rows: int = 1200, **trainer: Any) -> Path:
    """A synthetic MMoE pipeline (tiny data, runs and cache under ``tmp``, run folders without their
    pictures) with ``tune`` as its tune section."""
    raw = {
        "name": "tiny",
        "spec": str(ROOT / "feature_specs" / "synthetic.yaml"),
        "data": {"kind": "synthetic", "rows": rows, "num_tasks": 2, "seed": 3, "cache_dir": str(tmp / "cache")},
        "model": {"name": "mmoe", "params": {"num_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}},
        "trainer": {"max_epochs": 2, "batch_size": 128, "lr": 0.01, "patience": 2, "progress_bar": False, "plots": False,
                    "log_every_n_steps": 5, **trainer},
        "runs_dir": str(tmp / "runs"),
        "tune": tune,
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
