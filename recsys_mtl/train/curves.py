"""Training curves of a run: loss and metrics per task, train and validation, as one PNG.

Read from the run's CSV log (``logs/metrics.csv``, Lightning's CSVLogger), so the plot shows
exactly what was logged and can be redrawn for any finished or interrupted run.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from recsys_mtl.diagnostics.plot import save_png, young_garbage  # noqa: E402

#: metric suffixes drawn in their own panel, in this order (loss first)
_KINDS = ("loss", "auc", "gauc", "logloss", "rmse", "mae", "accuracy")


def curve_series(csv_path: str | Path, last_epoch: int | None = None) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """``{kind: {series name: (x, y)}}`` from a CSVLogger file.

    Validation series are per epoch; train series (logged per step) are averaged per epoch so
    both share the x axis. Columns of other kinds (balancing weights, throughput) are left out.
    ``last_epoch`` drops later rows: the re-validation of the selected checkpoint after training
    is logged under the next epoch number and is not a point of the curve.
    """
    df = pl.read_csv(csv_path, infer_schema_length=None)
    if "epoch" not in df.columns:
        raise ValueError(f"{csv_path}: no 'epoch' column; not a CSVLogger file")
    if last_epoch is not None:
        df = df.filter(pl.col("epoch") <= last_epoch)
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for col in df.columns:
        split, _, rest = col.partition("/")
        kind = rest.rsplit("/", 1)[-1] if rest else ""
        if split not in ("train", "val") or kind not in _KINDS:
            continue
        per_epoch = (
            df.select("epoch", col).drop_nulls().filter(pl.col(col).is_finite())
            .group_by("epoch").agg(pl.col(col).mean()).sort("epoch")
        )
        if per_epoch.height:
            out.setdefault(kind, {})[col] = (per_epoch["epoch"].to_list(), per_epoch[col].to_list())
    return out


@young_garbage
def plot_curves(run_dir: str | Path, out: str | Path | None = None, last_epoch: int | None = None) -> Path | None:
    """Write ``curves.png`` into the run folder (or ``out``); None when nothing was logged."""
    run_dir = Path(run_dir)
    csv_path = run_dir / "logs" / "metrics.csv"
    if not csv_path.is_file():
        return None
    series = curve_series(csv_path, last_epoch)
    kinds = [k for k in _KINDS if k in series]
    if not kinds:
        return None
    cols = min(3, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        for name, (x, y) in sorted(series[kind].items()):
            ax.plot(x, y, marker="o", markersize=3, linestyle="--" if name.startswith("train/") else "-", label=name)
        ax.set_title(kind)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(kinds):]:
        ax.axis("off")
    fig.suptitle(f"training curves: {run_dir.name}")
    fig.tight_layout()
    return save_png(fig, Path(out) if out is not None else run_dir / "curves.png", 80)
