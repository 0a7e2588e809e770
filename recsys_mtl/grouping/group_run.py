"""``recsys-mtl group RUN``: suggested task groups of a run, printed, plotted and written as HoME's ``groups``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recsys_mtl.errors import SpecError
from recsys_mtl.grouping import datamaps, lookahead
from recsys_mtl.grouping.cluster import MAX_EXHAUSTIVE_TASKS, Grouping, group_by_affinity, group_by_data_maps


def group_run(run_dir: str | Path, k: int | None = None) -> list[Grouping]:
    """Groupings of a run folder: from its data maps, and from its lookahead affinity if recorded."""
    run_dir = Path(run_dir)
    probs, tasks = datamaps.load(run_dir)
    out = [group_by_data_maps(probs, tasks, k)]
    recorded = lookahead.load(run_dir)
    if recorded is not None and len(recorded[1]) <= MAX_EXHAUSTIVE_TASKS:  # the partition search is exhaustive
        aff, names = recorded
        out.append(group_by_affinity(aff, names, min(k or len(out[0].groups()), len(names))))
    return out


def format_grouping(g: Grouping) -> str:
    width = max(len(t) for t in g.tasks)
    lines = [f"{g.method}: {g.groups()}", "affinity:", " " * (width + 1) + " ".join(f"{t[:7]:>7}" for t in g.tasks)]
    lines += [f"{t:<{width}} " + " ".join(f"{v:7.3f}" for v in row) for t, row in zip(g.tasks, g.affinity)]
    lines.append("membership: " + ", ".join(f"{t}: [{' '.join(f'{m:.2f}' for m in row)}]" for t, row in zip(g.tasks, g.membership)))
    return "\n".join(lines)


def plot(groupings: list[Grouping], path: Path) -> Path:
    """One affinity heatmap per grouping, tasks ordered by group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groupings), figsize=(5 * len(groupings), 4.5), squeeze=False)
    for ax, g in zip(axes[0], groupings):
        order = np.argsort(g.labels, kind="stable")
        im = ax.imshow(g.affinity[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1)
        names = [f"{g.tasks[i]} ({g.labels[i]})" for i in order]
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(g.method, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_home_groups(pipeline: Path, groups: dict[str, list[str]], out: Path | None = None) -> Path:
    """Copy ``pipeline`` with ``model: {name: home, params: {groups: ...}}`` (other params kept
    when it already uses HoME) to ``out``, by default ``<stem>_grouped.yaml`` next to it; the copy
    stays in the pipeline's folder because relative paths inside are resolved from there."""
    out = out or pipeline.with_name(f"{pipeline.stem}_grouped.yaml")
    if out.resolve().parent != pipeline.resolve().parent or out.resolve() == pipeline.resolve():
        raise SpecError(f"{out}: write the grouped pipeline next to {pipeline} under another name")
    raw: dict[str, Any] = yaml.safe_load(pipeline.read_text()) or {}
    model = raw.get("model") or {}
    params = dict(model.get("params") or {}) if model.get("name") == "home" else {}
    params["groups"] = groups
    raw["model"] = {"name": "home", "params": params}
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
