"""benchmarks/balancing.py's report: per-seed Δ against equal weighting of the same seed, and the
single-task / LightGBM rows read from a ``recsys-mtl baseline`` baselines.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_balancing", ROOT / "benchmarks" / "balancing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(method: str, seed: int, a: float, b: float, sec: float | None = 1.0) -> dict[str, object]:
    return {"method": method, "seed": seed, "test": {"t0/auc": a, "t1/auc": b}, "train_seconds_per_epoch": sec,
            "peak_rss_mib": None, "best_epoch": 1}


def _rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in text.splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows}


def test_per_seed_delta_pairs_seeds_and_baselines_join(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    records = [_record("equal", 2, 0.80, 0.70), _record("equal", 1, 0.90, 0.80),
               _record("imtl", 1, 0.92, 0.80, 2.0), _record("imtl", 2, 0.80, 0.69, 2.0),
               {"method": "samo", "seed": 1, "error": "boom"}]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records))
    baselines = tmp_path / "baselines.json"
    test = {"1": {"test": {"t0/auc": 0.95, "t1/auc": 0.85, "t0/logloss": 0.3}}, "2": {"test": {"t0/auc": 0.85, "t1/auc": 0.75}}}
    baselines.write_text(json.dumps({"results": {"multitask": test, "single_task": test, "lightgbm": test}}))

    rows = _rows(_bench().table(runs, [baselines]))

    columns = ["method", "seeds", "t0 test AUC", "t1 test AUC", "mean AUC", "Δ", "per-seed Δ", "time", "rss"]
    imtl = dict(zip(columns, rows["imtl"]))
    # seed 1: (0.92 + 0.80)/2 − 0.85 = +0.01; seed 2: (0.80 + 0.69)/2 − 0.75 = −0.005, listed in seed order
    assert imtl["per-seed Δ"] == "+0.0100, -0.0050"
    assert imtl["Δ"].startswith("+0.0025 ± ")
    assert imtl["time"] == "2.00×" and imtl["rss"] == "–"
    assert rows["samo"][1] == "0 (failed 1)"
    single = dict(zip(columns, rows["single-task MMoE (one per task)"]))
    assert single["per-seed Δ"] == "+0.0500, +0.0500" and single["time"] == "–"
    assert single["t0 test AUC"] == "0.9000 ± 0.0707"
    assert "LightGBM per task" in rows and "multitask" not in " ".join(rows)
