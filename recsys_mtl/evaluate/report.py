"""``recsys-mtl evaluate EXPORT INPUT... [--by COLUMN]``: how an export does on new labelled rows.

Writes into ``out`` (a new folder):

* ``evaluate.json``: per task the metrics training reports (keys as in metrics.json's splits),
  calibration (ECE, predicted / observed, reliability bins), the same per slice of ``--by``, and
  drift of every input against the export's training statistics;
* ``evaluate.md``: the same as tables;
* ``reliability.png`` (binary tasks) and ``drift.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from recsys_mtl.artifacts import check_new_folder, write_atomic
from recsys_mtl.data.preprocess import encode_groups, encode_labels
from recsys_mtl.errors import DataError
from recsys_mtl.evaluate.drift import drift_flag, drift_report
from recsys_mtl.evaluate.metrics import calibration, task_metrics, to_logits
from recsys_mtl.evaluate.rows import load_export, needed_columns, read_rows, score_rows
from recsys_mtl.spec.features import group_columns
from serving.predictor import Predictor

#: slices of ``--by`` reported (the largest); the rest are counted together
MAX_SLICES = 50
NULL_SLICE = "(null)"


@dataclass
class Evaluation:
    out_dir: Path
    report: dict[str, Any]


def evaluate(export_dir: str | Path, inputs: Sequence[str], out: str | Path, by: str | None = None,
             max_slices: int = MAX_SLICES) -> Evaluation:
    export = load_export(export_dir)
    out = Path(out)
    check_new_folder(out)  # before scoring every row, not after
    df, files = read_rows(inputs, needed_columns(export, by), export)
    where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
    tasks = export.tasks
    labels, weights = encode_labels(tasks, df, str(where))
    groups_t = encode_groups(group_columns(tasks), df)
    groups = None if groups_t is None else groups_t.numpy()
    predictor = Predictor(export.export_dir, provider="cpu", warmup=False)
    outputs = score_rows(predictor, export.inputs, df, str(where))
    logits = {t.name: to_logits(t, outputs[t.name]) for t in tasks}

    report: dict[str, Any] = {
        "export": str(export.export_dir),
        "model": export.metadata.get("model"),
        "spec_name": export.spec.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [str(f) for f in files],
        "rows": df.height,
        "labelled_rows": {t.name: int((weights[:, i] > 0).sum()) for i, t in enumerate(tasks)},
        "metrics": task_metrics(tasks, logits, labels, weights, groups),
        "calibration": calibration(tasks, outputs, labels, weights),
        "export_test_metrics": export.metadata.get("test_metrics"),
    }
    if by is not None:
        report["by"] = by
        report["slices"] = _slices(df[by], tasks, logits, outputs, labels, weights, groups, max_slices)
    report["drift"] = drift_report(export.preprocessor, df, [i.feature for i in export.inputs])

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "evaluate.json", json.dumps(_finite(report), indent=1))
    write_atomic(out / "evaluate.md", markdown(report))
    from recsys_mtl.evaluate.drift_plot import plot_drift
    from recsys_mtl.train.calibration_plot import plot_reliability

    if report["calibration"]:
        plot_reliability({"raw": {"evaluated rows": report["calibration"]}}, out / "reliability.png")
    plot_drift(report["drift"], out / "drift.png")
    return Evaluation(out, report)


def _slices(col: pl.Series, tasks: Any, logits: Any, outputs: Any, labels: np.ndarray, weights: np.ndarray,
            groups: np.ndarray | None, max_slices: int) -> list[dict[str, Any]]:
    """Metrics and calibration per value of ``col`` (largest slices first; the rest summed as ``other``)."""
    keys = col.cast(pl.String).fill_null(NULL_SLICE)
    counts = keys.value_counts(sort=True)
    values = keys.to_numpy()
    out = []
    for value, n in counts.head(max_slices).iter_rows():
        rows = values == value
        cal = calibration(tasks, outputs, labels, weights, rows)
        out.append({
            "value": value, "rows": int(n),
            "labelled_rows": {t.name: int((rows & (weights[:, i] > 0)).sum()) for i, t in enumerate(tasks)},
            "metrics": task_metrics(tasks, logits, labels, weights, groups, rows),
            "calibration": {t: {k: c[k] for k in ("ece", "ratio", "mean_prediction", "observed_rate")} for t, c in cal.items()},
        })
    rest = counts.slice(max_slices)
    if rest.height:
        out.append({"value": "other", "values": rest.height, "rows": int(rest["count"].sum())})
    return out


def _finite(value: Any) -> Any:
    """NaN / inf → null, so evaluate.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    """evaluate.md: metrics, calibration, slices and drift as tables."""
    lines = [f"# Evaluation of `{Path(report['export']).name}`", "",
             f"{report['rows']:,} rows from {len(report['inputs'])} file(s); created {report['created']}.", "",
             "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["metrics"].items()]
    if report["calibration"]:
        lines += ["", "## Calibration (binary tasks)", "",
                  "| task | rows | ECE | predicted / observed | mean prediction | observed rate |", "|---|---|---|---|---|---|"]
        lines += [f"| {t} | {c['rows']:,} | {_fmt(c['ece'])} | {_fmt(c['ratio'], 3)} | {_fmt(c['mean_prediction'])} | "
                  f"{_fmt(c['observed_rate'])} |" for t, c in report["calibration"].items()]
    if "slices" in report:
        keys = list(report["metrics"])
        lines += ["", f"## By `{report['by']}`", "", "| value | rows | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for s in report["slices"]:
            if "metrics" not in s:
                lines.append(f"| other ({s['values']} values) | {s['rows']:,} |" + " |" * len(keys))
                continue
            lines.append(f"| {s['value']} | {s['rows']:,} | " + " | ".join(_fmt(s["metrics"].get(k)) for k in keys) + " |")
    lines += ["", "## Input drift against the training statistics", "",
              "PSI: < 0.1 stable, 0.1–0.25 moderate, > 0.25 shifted. OOV: share of present values out of the "
              "training vocabulary.", "", "| input | kind | missing share | OOV share | PSI | verdict |", "|---|---|---|---|---|---|"]
    for name, d in sorted(report["drift"].items(), key=lambda kv: -(kv[1].get("psi") or kv[1].get("oov_share") or 0)):
        lines.append(f"| {name} | {d['kind']} | {_fmt(d.get('missing_share'))} | {_fmt(d.get('oov_share'))} | "
                     f"{_fmt(d.get('psi'))} | {drift_flag(d) or d.get('note', '')} |")
    return "\n".join(lines) + "\n"
