"""The drift plot of an evaluation: PSI per numeric input, OOV share per categorical / sequence input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402

from recsys_mtl.diagnostics.plot import save_png  # noqa: E402
from recsys_mtl.evaluate.drift import PSI_MODERATE, PSI_SHIFTED  # noqa: E402


def plot_drift(drift: dict[str, dict[str, Any]], path: Path) -> Path:
    """Two horizontal bar panels (largest first): PSI with its 0.1 / 0.25 marks, and OOV share."""
    psi = sorted(((k, d["psi"]) for k, d in drift.items() if d.get("psi") is not None), key=lambda kv: kv[1])
    oov = sorted(((k, d["oov_share"]) for k, d in drift.items() if d.get("oov_share") is not None), key=lambda kv: kv[1])
    height = max(3.0, 0.28 * max(len(psi), len(oov), 1) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(11, height), squeeze=False)
    ax = axes[0][0]
    if psi:
        ax.barh([k for k, _ in psi], [v for _, v in psi], color=["C3" if v > PSI_SHIFTED else "C1" if v > PSI_MODERATE else "C0"
                                                                   for _, v in psi])
        for mark in (PSI_MODERATE, PSI_SHIFTED):
            ax.axvline(mark, color="grey", lw=0.8, ls=":")
    ax.set_title("numeric inputs: PSI vs training quantiles")
    ax = axes[0][1]
    if oov:
        ax.barh([k for k, _ in oov], [v for _, v in oov], color="C2")
        ax.set_xlim(0, max(0.05, max(v for _, v in oov) * 1.1))
    ax.set_title("categorical inputs: out-of-vocabulary share")
    for a in axes[0]:
        a.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return save_png(fig, path, 90)
