"""Study plots: optimization history, parameter importances, intermediate values, Pareto front.

HTML uses ``optuna.visualization`` (plotly; one shared ``plotly.min.js`` next to the pages so they
open offline), PNG uses ``optuna.visualization.matplotlib``. A plot the study cannot support yet
(e.g. importances from fewer than two complete trials) is skipped with a log line, not an error.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def _targets(metrics: list[str]) -> list[tuple[str, Callable[[optuna.trial.FrozenTrial], float] | None, str]]:
    """(file suffix, target, name) per objective; a single objective needs no target."""
    if len(metrics) == 1:
        return [("", None, metrics[0])]
    return [(f"_{m.removeprefix('val/').replace('/', '_')}", (lambda t, i=i: t.values[i]), m) for i, m in enumerate(metrics)]


def _figures(study: optuna.Study, metrics: list[str], vis: Any) -> dict[str, Callable[[], Any]]:
    figs: dict[str, Callable[[], Any]] = {}
    for suffix, target, name in _targets(metrics):
        figs[f"history{suffix}"] = lambda target=target, name=name: vis.plot_optimization_history(study, target=target, target_name=name)
        figs[f"importances{suffix}"] = lambda target=target, name=name: vis.plot_param_importances(study, target=target, target_name=name)
    if len(metrics) == 1:
        figs["intermediate_values"] = lambda: vis.plot_intermediate_values(study)  # the pruner's view
    if len(metrics) in (2, 3):
        figs["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=metrics)
    return figs


def write_plots(study: optuna.Study, metrics: list[str], out: Path, fmt: str = "html") -> list[Path]:
    """Write the study's plots to ``out`` as ``fmt`` ("html", "png" or "none"); returns the files written."""
    if fmt == "none" or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if fmt == "html":
        vis: Any = optuna.visualization
    else:
        import matplotlib

        matplotlib.use("Agg")  # headless
        import matplotlib.pyplot as plt

        vis = optuna.visualization.matplotlib
    for name, make in _figures(study, metrics, vis).items():
        path = out / f"{name}.{fmt}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks matplotlib plots experimental
                fig = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("plot %s skipped: %s", name, exc)
            continue
        if fmt == "html":
            fig.write_html(path, include_plotlyjs="directory")
        else:
            figure = fig.figure if hasattr(fig, "figure") else fig[0].figure  # Axes or array of Axes
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
        written.append(path)
    return written
