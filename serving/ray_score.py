"""``recsys-mtl score --engine ray``: the same scoring on Ray Data, for inputs beyond one machine.

Ray Data reads the inputs (``read_parquet`` / ``read_csv``, the export's input columns typed as
:mod:`serving.batch_inputs` types them), an actor pool of ``workers`` actors, each holding one
:class:`~serving.predictor.Predictor` (one onnxruntime session, built once per actor), scores the
record batches through the server's input path (:func:`serving.batch_score.feed_of`), and Ray Data
writes Parquet. The scores are the local ``score``'s (``tests/serving/test_score_ray.py``).

Differences from the local engine, by Ray's design:

* the output is a **folder** of Parquet files (one per written block, Ray's naming), staged as a
  hidden folder beside ``out`` and renamed when complete; rows keep the input order
  (``preserve_order``) across the files in Ray's block order; read it as one dataset
  (``pyarrow.dataset`` / ``polars.scan_parquet(out)``), and keep an id column to join on;
* a refused value names the file and the row within its Ray block, not the row group;
* inputs are checked up front as the local engine checks them (missing columns, unreadable
  files), before Ray starts.

``address`` reaches an existing cluster (``ray://…`` or ``auto``); without it a local Ray
instance starts with ``workers + 1`` CPUs. Needs the ``ray`` extra: ``pip install 'recsys-mtl[ray]'``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from serving.batch_inputs import FORMATS, Unit, csv_types, plan, resolve
from serving.batch_score import BATCH_ROWS, BatchScoreError, ScoreResult, _check_tasks, feed_of, output_columns
from serving.metadata import load_metadata
from serving.predictor import Predictor
from serving.schema import Schema

#: the column Ray Data's ``include_paths`` adds (left out when an input column has that name)
PATH_COLUMN = "path"


class ArrowScorer:
    """A Ray Data actor: one Predictor, pyarrow batches in, pass-through columns and scores out."""

    def __init__(self, export_dir: str, tasks: list[str], keep: list[str], threads: int, with_path: bool):
        self.predictor = Predictor(export_dir, provider="cpu", intra_threads=threads)
        self.tasks = tasks
        self.keep = keep
        self.with_path = with_path

    def __call__(self, batch: pa.Table) -> pa.Table:
        path = batch.column(PATH_COLUMN)[0].as_py() if self.with_path else "input"
        outputs = self.predictor.predict(feed_of(self.predictor.schema, batch, Unit(path, "ray", None, 0)))
        return pa.Table.from_arrays([batch.column(c) for c in self.keep] + output_columns(outputs, self.tasks),
                                    names=[*self.keep, *self.tasks])


def score_ray(export_dir: str | Path, inputs: Sequence[str], out: str | Path, *, keep: Sequence[str] = (),
              tasks: Sequence[str] | None = None, workers: int = 2, batch_rows: int = BATCH_ROWS, threads: int = 1,
              cpus_per_worker: float = 1.0, address: str | None = None, overwrite: bool = False) -> ScoreResult:
    """``workers`` actors of ``cpus_per_worker`` Ray CPUs each; Ray Data's read and write tasks need
    CPUs beside them (a local instance gets ``workers + 1``; on a cluster of exactly ``workers``
    CPUs give the actors less than one each, or the read tasks wait for ever)."""
    import ray

    started = time.perf_counter()
    export_dir, out = Path(export_dir).resolve(), Path(out)
    metadata = load_metadata(export_dir)
    schema = Schema(metadata)
    wanted = _check_tasks(tasks, [o["name"] for o in metadata["outputs"]])
    keep = list(dict.fromkeys(keep))
    if set(keep) & set(wanted):
        raise BatchScoreError(f"--keep column {sorted(set(keep) & set(wanted))[0]!r} has the name of a task output")
    if out.exists() and not overwrite:
        raise BatchScoreError(f"{out}: already exists; choose another output or overwrite it")
    files = resolve(inputs)
    types = csv_types(schema.inputs)
    _, first = plan(files, [*(i.name for i in schema.inputs), *keep], types)
    columns = list(dict.fromkeys([*(i.name for i in schema.inputs), *(c for c in schema.conditions if c in first.names), *keep]))

    if not ray.is_initialized():
        init: dict[str, Any] = {"address": address} if address else {"num_cpus": int(workers * cpus_per_worker) + 1}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **init)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    parquet = [str(f.resolve()) for f in files if FORMATS[f.suffix.lower()] == "parquet"]
    csv = [str(f.resolve()) for f in files if FORMATS[f.suffix.lower()] == "csv"]
    parts = []
    with_path = PATH_COLUMN not in columns
    if parquet:
        parts.append(ray.data.read_parquet(parquet, columns=columns, include_paths=with_path))
    if csv:
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(column_types=types, include_columns=columns)
        parts.append(ray.data.read_csv(csv, convert_options=convert, include_paths=with_path))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    scored = ds.map_batches(ArrowScorer, fn_constructor_args=(str(export_dir), wanted, keep, threads, with_path),
                            batch_format="pyarrow", batch_size=batch_rows, concurrency=workers, num_cpus=cpus_per_worker)
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    try:
        scored.write_parquet(str(stage.resolve()))
        rows = sum(_rows(p) for p in stage.rglob("*.parquet"))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(stage, out)
    except Exception as exc:  # Ray wraps the actor's error (RayTaskError, UserCodeException): find ours
        raise _actor_error(exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ScoreResult(out, rows, time.perf_counter() - started, len(files), workers, wanted)


def _actor_error(exc: BaseException) -> BaseException:
    """The BatchScoreError an actor raised, from Ray's wrapping (its chain, else its text); else ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BatchScoreError):
            return BatchScoreError(str(seen))
        seen = getattr(seen, "cause", None) or seen.__cause__
    match = re.search(r"BatchScoreError: (.+)", str(exc))
    return BatchScoreError(match.group(1).strip()) if match else exc


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
