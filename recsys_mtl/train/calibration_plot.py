"""Reliability diagram of a calibration report: one panel per binary task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402

from recsys_mtl.diagnostics.plot import save_png, young_garbage  # noqa: E402


@young_garbage
def plot_reliability(report: dict[str, Any], path: Path) -> Path:
    """Observed rate against mean prediction per bin, per split (raw, and calibrated if fitted)."""
    tasks = list(next(iter(report["raw"].values())).keys())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        for kind in ("raw", "calibrated"):
            for split, per_task in report.get(kind, {}).items():
                s = per_task[task]
                pts = [(p, r) for p, r in zip(s["bins"]["mean_prediction"], s["bins"]["observed_rate"]) if p is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", ms=3, ls="-" if kind == "raw" else "--",
                        label=f"{split} {kind}: ECE {s['ece']:.4f}, ratio {s['ratio']:.3f}")
        ax.set_title(task)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed rate")
        ax.legend(fontsize=7, loc="upper left")
    title = "reliability" + (f" ({report['method']} fitted on validation)" if report.get("method") else "")
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path, 90)
