"""One PNG per run from a diagnostics result: expert sparsity, gate weights, per-task expert usage."""

from __future__ import annotations

import functools
import gc
from pathlib import Path
from typing import Any, Callable, TypeVar

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

USAGE_KINDS = ("own", "group", "shared", "other")
F = TypeVar("F", bound=Callable[..., Any])


def young_garbage(draw: F) -> F:
    """Run ``draw`` (which builds, saves and closes a figure) with Python's cyclic garbage collector paused.

    A figure is tens of thousands of objects in reference cycles. Collections during the drawing
    promote them to the old generation, and once the figure is closed only a full collection frees
    them: one that walks every object of the process (~0.3 CPU s after a fit, every few runs). Paused,
    they stay young and the next young collection frees them. The collector's state is restored.
    """

    @functools.wraps(draw)
    def paused(*args: Any, **kwargs: Any) -> Any:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return draw(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


def save_png(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a file) and close it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


@young_garbage
def plot_diagnostics(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Write a three-panel PNG to ``path`` and return it."""
    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1.2, 1.4, 0.8]})
    _sparsity(axes[0], result["experts"])
    _gate_heatmap(fig, axes[1], result["gates"])
    _usage(axes[2], result["tasks"])
    fig.suptitle(title or "expert diagnostics")
    fig.tight_layout()
    return save_png(fig, path, 90)


def _sparsity(ax: Any, experts: dict[str, Any]) -> None:
    zero: list[float] = []
    near: list[float] = []
    labels: list[str] = []
    for name, e in experts.items():
        short = name.replace("levels.", "L").replace("experts", "exp")
        for i, (z, n) in enumerate(zip(e["zero_fraction"], e["near_zero_fraction"])):
            zero.append(z)
            near.append(n)
            labels.append(f"{short}[{i}]")
    x = np.arange(len(labels))
    ax.bar(x - 0.2, zero, 0.4, label="zero")
    ax.bar(x + 0.2, near, 0.4, label="near-zero")
    ax.set_xticks(x, labels, rotation=90, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of outputs")
    ax.set_title("expert activation sparsity")
    ax.legend(fontsize=8)


def _gate_heatmap(fig: Any, ax: Any, gates: dict[str, Any]) -> None:
    if not gates:
        ax.set_axis_off()
        return
    width = max(len(g["mean_weight"]) for g in gates.values())
    grid = np.full((len(gates), width), np.nan)
    labels = []
    for r, (name, g) in enumerate(gates.items()):
        grid[r, : len(g["mean_weight"])] = g["mean_weight"]
        labels.append(f"{name} ({g['task'] or 'shared'}, H={g['normalized_entropy']:.2f})")
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("expert (in the gate's order)")
    ax.set_title("mean gate weight (H = normalised entropy)")
    fig.colorbar(im, ax=ax, fraction=0.04)


def _usage(ax: Any, tasks: dict[str, Any]) -> None:
    names = list(tasks)
    bottom = np.zeros(len(names))
    for kind in USAGE_KINDS:
        vals = np.array([tasks[t][kind] for t in names])
        ax.bar(names, vals, bottom=bottom, label=kind)
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_title("gate weight by expert owner, per task")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", rotation=45)
