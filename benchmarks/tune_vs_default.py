"""Tuned vs enqueued default on test, from finished `recsys-mtl run` studies (the README's main job).

    python -m recsys_mtl.cli run pipelines/synthetic_mmoe_tune.yaml --runs-dir /tmp/h19/after-s0/runs \
        --exports-dir /tmp/h19/after-s0/exports --set tune.sampler.params.seed=0      # one study per sampler seed
    python benchmarks/tune_vs_default.py "pick rule, full-budget trials" 0=/tmp/h19/after-s0/runs/tune/synthetic_mmoe \
        --json /tmp/h19/rows.json

Prints one row per study: the refit trial and why, validation (trial objective) and test (each refit
tested once) AUC per task for the default (trial 0) and the refit, and whether tuned >= default on
test for every task, then a ``why:`` line (the pick's reason and the best smallest validation gain over
trial 0 of any trial). ``--json`` writes the rows (render_results.py's ``rows`` format).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def row(label: str, seed: str, area: Path) -> list[Any]:
    """One study folder (holding summary.json), studied with sampler seed ``seed`` -> one table row."""
    s = json.loads((area / "summary.json").read_text())
    report = s["default_vs_tuned"]
    if report is None:
        raise SystemExit(f"{area}/summary.json: no default_vs_tuned (no finished default trial or no refit)")
    tasks = [k for k in (report["default"]["test"] or {}) if k.endswith("/auc") and k != "auc_mean"]
    d, t = report["default"], report["tuned"]
    cells: list[Any] = [label, seed, f"trial {t['trial']}" + (" (= default)" if report["default_is_best"] else "")]
    for task in tasks:
        cells.append(f"{d['val'][task]:.4f} / {t['val'][task]:.4f}")
    for task in tasks:
        # five decimals: the gaps the verdict turns on can be 1e-5
        cells.append(f"{d['test'][task]:.5f} / {t['test'][task]:.5f}")
    cells.append("yes" if all(t["test"][k] >= d["test"][k] for k in tasks) else "no")
    return cells


def why(area: Path) -> str:
    """The pick's reason, and the best smallest validation gain over trial 0 any finished trial had
    (what ``tune.refit_min_gain`` is compared with)."""
    s = json.loads((area / "summary.json").read_text())
    directions = list(s["objectives"].values())
    done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
    default = next(t for t in done if t["role"] == "default")
    signed = [[(v - d) if dr == "maximize" else (d - v) for v, d, dr in zip(t["values"], default["values"], directions)]
              for t in done if t is not default]
    best = max(signed, key=min, default=None)
    gains = "none" if best is None else ", ".join(f"{g:+.4f}" for g in best)
    return f"{s['chosen_trial']['reason']} | best smallest val gain of {len(done) - 1} trials: {gains}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("label")
    ap.add_argument("areas", nargs="+", help="SEED=FOLDER: the sampler seed and the study folder <runs>/tune/<study>")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    rows = [row(args.label, seed, Path(folder)) for seed, folder in (a.split("=", 1) for a in args.areas)]
    for r, (_, folder) in zip(rows, (a.split("=", 1) for a in args.areas)):
        print(" | ".join(str(c) for c in r))
        print(f"    why: {why(Path(folder))}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
