"""An export's own definitions (spec, fitted preprocessing) and the labelled rows it is evaluated on.

The export folder carries the run's ``spec.yaml`` and ``preprocessing.json`` (written by
:func:`recsys_mtl.export.export_run`): labels, masks, sample weights and groups come from that
spec, and the training statistics for drift from that preprocessing, never from the user's
memory of them. An export written before they travelled with it falls back to its run folder
(``metadata.json → run_dir``) when that still exists and its spec hash matches.

Rows are read from the inputs ``recsys-mtl score`` takes (Parquet / CSV files, folders, globs;
:mod:`serving.batch_inputs`), only the columns the evaluation needs, and scored through the
server's input path (:func:`recsys_mtl.export.raw.raw_feed`) and :class:`serving.predictor.Predictor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys_mtl.data.preprocess import Preprocessor, spec_hash
from recsys_mtl.errors import DataError
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.spec.features import FeatureSpec, Task, expression_columns, group_columns
from recsys_mtl.spec.loading import load_spec
from serving.batch_inputs import FORMATS, BatchInputError, csv_types, plan, resolve
from serving.contract import InputSpec, inputs_from_json
from serving.metadata import ExportLoadError, load_metadata
from serving.predictor import Predictor

#: rows per ONNX call
SCORE_BATCH = 65_536
TRAINING_FILES = ("spec.yaml", "preprocessing.json")


@dataclass
class LoadedExport:
    export_dir: Path
    metadata: dict[str, Any]
    spec: FeatureSpec
    preprocessor: Preprocessor
    #: the export's tasks (a task-sparse export scores a subset of the spec's), in output order
    tasks: list[Task]
    inputs: list[InputSpec]


def load_export(export_dir: str | Path) -> LoadedExport:
    export_dir = Path(export_dir)
    try:
        meta = load_metadata(export_dir)
    except ExportLoadError as exc:
        raise DataError(str(exc)) from None
    home = export_dir
    if not all((export_dir / n).is_file() for n in TRAINING_FILES):
        run = Path(str(meta.get("run_dir", "")))
        if not all((run / n).is_file() for n in TRAINING_FILES):
            raise DataError(f"{export_dir}: has no spec.yaml / preprocessing.json (exported by an older version) and "
                            f"its run folder {run} is gone; export the run again")
        home = run
    spec = load_spec(home / "spec.yaml")
    if spec_hash(spec) != meta.get("spec_hash"):
        raise DataError(f"{home / 'spec.yaml'}: not the spec {export_dir / 'metadata.json'} was exported with "
                        f"(hash {spec_hash(spec)}, metadata {meta.get('spec_hash')})")
    pre = Preprocessor.load(home / "preprocessing.json", spec)
    by_name = {t.name: t for t in spec.tasks}
    unknown = [t for t in meta["tasks"] if t not in by_name]
    if unknown:
        raise DataError(f"{export_dir / 'metadata.json'}: task {unknown[0]!r} is not in {home / 'spec.yaml'}")
    return LoadedExport(export_dir, meta, spec, pre, [by_name[t] for t in meta["tasks"]], inputs_from_json(meta["inputs"]))


def needed_columns(export: LoadedExport, by: str | None) -> list[str]:
    """Input columns, then the columns the tasks' label / mask / sample weight / group read, then ``by``."""
    cols = [i.name for i in export.inputs]
    for t in export.tasks:
        for field in ("label", "mask", "sample_weight"):
            expr = getattr(t, field)
            if expr is not None:
                cols += expression_columns(expr, f"task {t.name!r} {field}")
    cols += group_columns(export.tasks) + ([by] if by else [])
    return list(dict.fromkeys(cols))


def read_rows(inputs: Sequence[str], columns: list[str], export: LoadedExport) -> tuple[pl.DataFrame, list[Path]]:
    """The ``columns`` of every input file, concatenated in input order; every file is checked for
    them before any is read (the error names the file and column)."""
    types = csv_types(export.inputs)
    try:
        files = resolve(inputs)
        plan(files, columns, types)
        tables = []
        for path in files:
            try:
                if FORMATS[path.suffix.lower()] == "parquet":
                    tables.append(pq.read_table(path, columns=columns))
                else:
                    convert = pacsv.ConvertOptions(column_types=types, include_columns=columns)
                    tables.append(pacsv.read_csv(path, convert_options=convert))
            except (pa.ArrowException, OSError) as exc:
                raise BatchInputError(f"{path}: cannot be read ({str(exc).splitlines()[0][:300]})") from None
        table = pa.concat_tables(tables, promote_options="permissive")
    except (BatchInputError, pa.ArrowException) as exc:
        raise DataError(str(exc)) from None
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if df.height == 0:
        raise DataError(f"{', '.join(map(str, files))}: no rows")
    return df, files


def score_rows(predictor: Predictor, inputs: list[InputSpec], df: pl.DataFrame, where: str) -> dict[str, np.ndarray]:
    """The export's outputs for every row of ``df``, by batches of :data:`SCORE_BATCH` rows."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, df.height, SCORE_BATCH):
        chunk = df.slice(start, SCORE_BATCH)
        parts.append(predictor.predict(raw_feed(inputs, chunk, f"{where}, rows {start}..{start + chunk.height - 1}")))
    return {t: np.concatenate([p[t] for p in parts]) for t in predictor.tasks}
