"""A run's held-out split written to Parquet, as the fit split it (``recsys-mtl split RUN``).

The run folder's ``pipeline.yaml`` holds the data section with every setting that shaped the
split (paths, seeds, fractions, periods), so the rows are rebuilt by the same
:func:`recsys_mtl.data.sources.data_source` the fit read them through: ``evaluate`` on the written
file scores the rows ``metrics.json``'s ``test`` (or ``val``) figures were computed on.

Raw columns are written as the source reads them (before preprocessing), which is what an export
takes. The file is written to a temporary beside it and renamed when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

from recsys_mtl.data.sources import data_source
from recsys_mtl.errors import DataError
from recsys_mtl.spec.loading import read_yaml, validate
from recsys_mtl.spec.pipeline import PipelineConfig

#: split name → the data source method that returns its rows
SPLITS = {"test": "test", "valid": "valid"}


def write_split(run_dir: str | Path, split: str, out: str | Path, overwrite: bool = False) -> tuple[Path, int]:
    """Write the ``split`` rows of the run in ``run_dir`` to the Parquet file ``out``; returns (out, rows)."""
    run_dir, out = Path(run_dir), Path(out)
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    pipeline = run_dir / "pipeline.yaml"
    if not pipeline.is_file():
        raise DataError(f"{run_dir}: not a run folder (pipeline.yaml is missing)")
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists; choose another output or overwrite it")
    cfg = validate(PipelineConfig, read_yaml(pipeline), pipeline)
    frame = getattr(data_source(cfg.data), SPLITS[split])()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise DataError(f"{out}: cannot write ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out, frame.height
