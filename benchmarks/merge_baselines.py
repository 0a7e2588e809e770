"""Merge ``baselines.json`` of several ``recsys-mtl baseline`` folders (e.g. one process per seed)
into one table: mean ± std over every seed found, Δm and negative-transfer flags as ``baseline``
computes them, and the choices the baselines made on validation.

    python benchmarks/merge_baselines.py runs/drift_s1/*-baselines-* runs/drift_s2/*-baselines-* --json merged.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recsys_mtl.baselines.compare import Results, choices_note, markdown_table, summarize
from recsys_mtl.spec import load_spec


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results: Results = {}
    extra: dict[str, Any] = {}
    spec = None
    for folder in args.folders:
        report = json.loads((folder / "baselines.json").read_text())
        spec = spec or load_spec(next((folder / "multitask").glob("*/spec.yaml")))
        for method, by_seed in report["results"].items():
            for seed, r in by_seed.items():
                results.setdefault(method, {})[int(seed)] = r
        for key in ("lightgbm_choice", "bias_choice"):
            extra.setdefault(key, {}).update(report.get(key, {}))
        if "lightgbm_high_cardinality" in report:  # a folder without the LightGBM side has none
            extra["lightgbm_high_cardinality"] = report["lightgbm_high_cardinality"]
    assert spec is not None
    summary = summarize(results, spec.tasks)
    table = markdown_table(summary) + choices_note(extra)
    seeds = {m: sorted(s) for m, s in results.items()}
    print(f"seeds per side: {seeds}\n\n{table}")
    if args.json:
        args.json.write_text(json.dumps({"seeds": seeds, "results": results, "summary": summary, **extra}, indent=2))


if __name__ == "__main__":
    main()
