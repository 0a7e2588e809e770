"""Calibration of binary tasks: how well predicted probabilities match observed rates, and an
optional post-hoc recalibration fitted on the validation split only.

Measures, per binary task and split:

- ``ece``: expected calibration error, ``Σ_b (n_b / n) · |mean p_b − rate_b|`` over ``bins``
  equal-width probability bins (Naeini et al., 2015; Guo et al., 2017), on the rows the task's
  mask counts;
- ``ratio``: mean predicted probability / observed positive rate (1 = unbiased overall, the
  number ads teams check first);
- the reliability curve (mean prediction and observed rate per bin), drawn to a PNG.

Post-hoc calibrators are affine maps of the logit, ``z' = a·z + b``, so the exported graph needs
two constants per task (see :class:`recsys_mtl.export.model_graph.ScoringHead`):

- ``temperature`` (Guo et al., 2017): ``a = 1/T``, ``b = 0``; T minimises validation log loss.
  Ranking (AUC, GAUC) is unchanged.
- ``platt`` (Platt, 1999, on the model's logit): ``a`` and ``b`` minimise validation log loss.
  Ranking is unchanged too (``a > 0`` in practice); the intercept also fixes a biased base rate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from recsys_mtl.artifacts import write_atomic
from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import EncodedTable, features_only
from recsys_mtl.spec.features import Task

CALIBRATION_FILE = "calibration.json"
RELIABILITY_PLOT = "reliability.png"


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """(N,) probabilities and 0/1 labels → ECE, predicted/observed ratio and the per-bin curve."""
    probs = probs.astype(np.float64)
    labels = labels.astype(np.float64)
    which = np.clip((probs * bins).astype(np.int64), 0, bins - 1)  # p = 1 falls in the last bin
    count = np.bincount(which, minlength=bins).astype(np.float64)
    sum_p = np.bincount(which, weights=probs, minlength=bins)
    sum_y = np.bincount(which, weights=labels, minlength=bins)
    used = count > 0
    mean_p = np.where(used, sum_p / np.maximum(count, 1), np.nan)
    rate = np.where(used, sum_y / np.maximum(count, 1), np.nan)
    ece = float(np.sum(count[used] * np.abs(mean_p[used] - rate[used])) / count.sum())
    observed = float(labels.mean())
    return {
        "rows": int(labels.size),
        "ece": ece,
        "ratio": float(probs.mean() / observed) if observed > 0 else float("nan"),
        "mean_prediction": float(probs.mean()),
        "observed_rate": observed,
        "bins": {"count": count.astype(int).tolist(), "mean_prediction": _list(mean_p), "observed_rate": _list(rate)},
    }


def _list(x: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 6) for v in x]


def _fit_logit_affine(logits: Tensor, labels: Tensor, slope: bool, intercept: bool) -> tuple[float, float]:
    """Minimise mean BCE(a·z + b, y) over the free parameters with L-BFGS (float64, convex)."""
    z, y = logits.double(), labels.double()
    log_a = torch.zeros((), dtype=torch.float64, requires_grad=slope)  # a = exp(log_a) > 0 keeps ranking
    b = torch.zeros((), dtype=torch.float64, requires_grad=intercept)
    params = [p for p in (log_a, b) if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z * log_a.exp() + b, y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_a.detach().exp()), float(b.detach())


#: calibrator name → fit on (validation logits, labels) → (a, b) of ``z' = a·z + b``
CALIBRATORS: dict[str, Callable[[Tensor, Tensor], tuple[float, float]]] = {
    "temperature": lambda z, y: _fit_logit_affine(z, y, slope=True, intercept=False),
    "platt": lambda z, y: _fit_logit_affine(z, y, slope=True, intercept=True),
}


def check_calibrator(name: str | None) -> None:
    if name is not None and name not in CALIBRATORS:
        from recsys_mtl.errors import SpecError

        raise SpecError(f"calibration: unknown method {name!r} (choose from {sorted(CALIBRATORS)})")


@torch.no_grad()
def predict_logits(model: torch.nn.Module, table: EncodedTable, batch_size: int = 8192) -> dict[str, Tensor]:
    """Logits of every row of ``table`` (model in eval mode; its mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    device = next(model.parameters()).device
    for batch in ColumnBatchLoader(table, batch_size):
        out = model({k: v.to(device) for k, v in features_only(batch).items()})
        for name, logit in out.items():
            parts.setdefault(name, []).append(logit.float().cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def fit_calibration(tasks: Sequence[Task], logits: dict[str, Tensor], table: EncodedTable, method: str) -> dict[str, dict[str, float]]:
    """Per binary task ``{"a", "b"}`` fitted on ``logits`` of ``table``'s labelled rows.

    Callers pass the validation split: the test split must never shape what is reported on it.
    """
    fitted = {}
    for i, task in enumerate(tasks):
        if task.type != "binary":
            continue
        keep = table.weights[:, i] > 0
        a, b = CALIBRATORS[method](logits[task.name][keep], table.labels[keep, i])
        fitted[task.name] = {"a": a, "b": b}
    return fitted


def _stats(tasks: Sequence[Task], logits: dict[str, Tensor], table: EncodedTable, fitted: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    out = {}
    for i, task in enumerate(tasks):
        if task.type != "binary":
            continue
        keep = table.weights[:, i] > 0
        z = logits[task.name][keep].double()
        if fitted is not None:
            z = z * fitted[task.name]["a"] + fitted[task.name]["b"]
        out[task.name] = reliability(torch.sigmoid(z).numpy(), table.labels[keep, i].numpy())
    return out


def calibration_report(
    model: torch.nn.Module, tasks: Sequence[Task], valid: EncodedTable, test: EncodedTable | None, method: str | None
) -> dict[str, Any]:
    """Reliability of the model on each split; with ``method``, a calibrator fitted on ``valid``
    only and the reliability after it. ``test`` is only ever scored, never fitted on."""
    binary = [t for t in tasks if t.type == "binary"]
    if not binary:
        return {}
    splits = {"val": valid, **({"test": test} if test is not None else {})}
    logits = {name: predict_logits(model, table) for name, table in splits.items()}
    report: dict[str, Any] = {"method": method, "fitted_on": "val" if method else None, "bins": 15}
    report["raw"] = {name: _stats(tasks, logits[name], table, None) for name, table in splits.items()}
    if method is not None:
        fitted = fit_calibration(tasks, logits["val"], valid, method)
        report["params"] = fitted
        report["calibrated"] = {name: _stats(tasks, logits[name], table, fitted) for name, table in splits.items()}
    return report


def write_calibration(run_dir: Path, report: dict[str, Any], plot: bool = True) -> None:
    """``calibration.json`` and, with ``plot``, ``reliability.png`` in the run folder (nothing for no
    binary task)."""
    if not report:
        return
    write_atomic(run_dir / CALIBRATION_FILE, json.dumps(report, indent=1))
    if plot:
        from recsys_mtl.train.calibration_plot import plot_reliability

        plot_reliability(report, run_dir / RELIABILITY_PLOT)


def load_calibration(run_dir: Path) -> dict[str, dict[str, float]]:
    """The fitted ``{task: {"a", "b"}}`` of a run folder, or ``{}`` when none was fitted."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    params = json.loads(path.read_text()).get("params") or {}
    return {task: {"a": float(p["a"]), "b": float(p["b"])} for task, p in params.items()}
