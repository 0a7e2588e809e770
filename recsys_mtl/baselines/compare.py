"""Comparing a multitask model with its baselines: Δm, negative transfer, the per-task table.

Results are plain dicts, ``results[method][seed] = {"val": {"task/metric": v}, "test": {...}}``,
the same keys a run folder's metrics.json holds, so fits and baselines compare key by key.

* Δm (multitask gain, Maninis et al. 2019; Liu et al. 2022) over a task's primary metric M_t:
  ``Δm = (1/T) Σ_t s_t (M_mt,t − M_st,t) / M_st,t`` with ``s_t = +1`` when higher is better
  (AUC, accuracy) and ``−1`` when lower is better (RMSE, MAE, log loss).
* Negative transfer ("negative sharing" in Deep Safe MTL): a task the multitask model serves
  worse than its single-task model beyond seed noise. With n ≥ 2 seeds per side, the
  sign-corrected relative difference of the means must fall below −2 standard errors of that
  difference (unpaired: the two sides' seeds are independent fits). With one seed there is no
  noise estimate, so a fixed relative tolerance stands in for it (``tolerance``, default 0.002 =
  0.2 % of the single-task metric: about 0.002 AUC at 0.95, larger than the ±0.0003–0.001 seed
  spread this project measures on census).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import mean, stdev
from typing import Any, Mapping, Sequence

from recsys_mtl.spec.features import Task

#: +1 when a larger value is better, −1 when a smaller one is
METRIC_SIGN: dict[str, int] = {"auc": 1, "accuracy": 1, "rmse": -1, "mae": -1, "logloss": -1}
DEFAULT_TOLERANCE = 0.002

Results = dict[str, dict[int, dict[str, dict[str, float]]]]


def primary_metric(task: Task) -> str:
    """The metric a task is compared on: the first of its metrics (AUC, RMSE or accuracy by default)."""
    return task.metric_names[0]


def relative_gain(mt: float, st: float, metric: str) -> float:
    """Sign-corrected relative improvement of ``mt`` over ``st`` (positive = multitask better)."""
    if st == 0:
        raise ValueError(f"{metric}: single-task value is 0, relative gain undefined")
    return METRIC_SIGN[metric] * (mt - st) / abs(st)


def delta_m(mt: Mapping[str, float], st: Mapping[str, float], metrics: Mapping[str, str]) -> float:
    """Δm over tasks; ``mt`` / ``st`` map task → primary metric value, ``metrics`` task → metric name."""
    if not metrics:
        raise ValueError("delta_m needs at least one task")
    return sum(relative_gain(mt[t], st[t], m) for t, m in metrics.items()) / len(metrics)


@dataclass(frozen=True)
class TransferCheck:
    """Is a task served worse by the multitask model than by its single-task model?"""

    flag: bool
    #: sign-corrected relative difference of the means (negative = multitask worse)
    gain: float
    #: the gain must fall below −threshold to flag
    threshold: float
    rule: str


def negative_transfer(mt: Sequence[float], st: Sequence[float], metric: str, tolerance: float = DEFAULT_TOLERANCE) -> TransferCheck:
    """Flag negative transfer on one task from per-seed values of both sides."""
    if not mt or not st:
        raise ValueError("negative_transfer needs at least one value per side")
    m_mt, m_st = mean(mt), mean(st)
    gain = relative_gain(m_mt, m_st, metric)
    if len(mt) >= 2 and len(st) >= 2:
        se = math.sqrt(stdev(mt) ** 2 / len(mt) + stdev(st) ** 2 / len(st)) / abs(m_st)
        threshold, rule = 2 * se, f"2 standard errors ({len(mt)} vs {len(st)} seeds)"
    else:
        threshold, rule = tolerance, f"relative tolerance {tolerance:g} (one seed, no noise estimate)"
    return TransferCheck(flag=gain < -threshold, gain=gain, threshold=threshold, rule=rule)


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"mean": mean(values), "std": stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(results: Results, tasks: Sequence[Task], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Mean ± std per method, task and split; Δm and negative-transfer flags (test split) when both
    ``multitask`` and ``single_task`` are present."""
    metrics = {t.name: primary_metric(t) for t in tasks}
    summary: dict[str, Any] = {"primary_metric": metrics, "methods": {}}
    for method, by_seed in results.items():
        # a method may serve only some tasks (the bias baselines: binary and regression ones)
        summary["methods"][method] = {
            t: {split: _stats([r[split][f"{t}/{m}"] for r in by_seed.values()]) for split in ("val", "test")}
            for t, m in metrics.items()
            if all(f"{t}/{m}" in r["test"] for r in by_seed.values())
        }
    if "multitask" in results and "single_task" in results:
        mt, st = results["multitask"], results["single_task"]
        for split in ("val", "test"):
            means = {side: {t: summary["methods"][side][t][split]["mean"] for t in metrics} for side in ("multitask", "single_task")}
            summary[f"delta_m_{split}"] = delta_m(means["multitask"], means["single_task"], metrics)
        paired = sorted(set(mt) & set(st))
        summary["delta_m_test_per_seed"] = {
            s: delta_m({t: mt[s]["test"][f"{t}/{m}"] for t, m in metrics.items()}, {t: st[s]["test"][f"{t}/{m}"] for t, m in metrics.items()}, metrics)
            for s in paired
        }
        summary["negative_transfer"] = {
            t: asdict(negative_transfer([r["test"][f"{t}/{m}"] for r in mt.values()], [r["test"][f"{t}/{m}"] for r in st.values()], m, tolerance))
            for t, m in metrics.items()
        }
    return summary


METHOD_LABELS = {"multitask": "multitask", "single_task": "single-task", "lightgbm": "LightGBM", "lightgbm_plain": "LightGBM (plain)",
                 "rmtgb": "R-MTGB", "bias": "bias / item rate"}


def markdown_table(summary: dict[str, Any], split: str = "test") -> str:
    """One row per task: primary metric mean ± std of every method, the gain over single-task and the flag."""
    methods = list(summary["methods"])
    head = ["task", "metric", *(METHOD_LABELS.get(m, m) for m in methods)]
    has_transfer = "negative_transfer" in summary
    if has_transfer:
        head += ["gain vs single-task", "negative transfer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, metric in summary["primary_metric"].items():
        cells = [task, f"{split} {metric}"]
        for m in methods:
            s = summary["methods"][m].get(task, {}).get(split)
            cells.append("—" if s is None else f"{s['mean']:.4f} ± {s['std']:.4f}" if s["n"] > 1 else f"{s['mean']:.4f}")
        if has_transfer:
            nt = summary["negative_transfer"][task]
            cells += [f"{100 * nt['gain']:+.2f} %", "**yes**" if nt["flag"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    if has_transfer:
        lines.append("")
        lines.append(f"Δm (multitask vs single-task, {split}): {100 * summary[f'delta_m_{split}']:+.3f} %")
    return "\n".join(lines) + "\n"


def choices_note(extra: dict[str, Any]) -> str:
    """What the baselines chose on validation, per task over the seeds (below the table)."""
    lines = []
    by_task: dict[str, list[str]] = {}
    for per_task in extra.get("lightgbm_choice", {}).values():
        for task, c in per_task.items():
            by_task.setdefault(task, []).append(c["encoding"])
    if by_task:
        cols = ", ".join(extra.get("lightgbm_high_cardinality", [])) or "none"
        picks = "; ".join(f"{t}: {', '.join(v)}" for t, v in by_task.items())
        lines.append(f"LightGBM high-cardinality encoding chosen on validation per seed (columns: {cols}): {picks}.")
    by_task = {}
    for per_task in extra.get("bias_choice", {}).values():
        for task, c in per_task.items():
            key = "lambda" if "lambda" in c else "prior"
            by_task.setdefault(task, []).append(f"{c['model']}, {key} {c[key]:g}")
    if by_task:
        lines.append("Bias baseline chosen on validation per seed: " + "; ".join(f"{t}: {' / '.join(v)}" for t, v in by_task.items()) + ".")
    return ("\n" + "\n".join(lines) + "\n") if lines else ""
