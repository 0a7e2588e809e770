"""Offline scoring: Parquet / CSV files in, one Parquet file of scores out (``recsys-mtl score``).

* Inputs (files, folders, globs; :mod:`serving.batch_inputs`) are all opened and checked first: a
  missing column or an unreadable file is refused, naming the file, before any row is scored.
* Rows stream by record batch (at most ``batch_rows`` rows) of one Parquet row group or CSV block
  at a time, so memory is bounded by a batch, not by the data.
* Every batch goes through the HTTP server's own input path (:meth:`serving.schema.Schema.from_arrow`
  on the input columns, plus any condition column present, as an Arrow request is read) and the
  server's :class:`~serving.predictor.Predictor`: the scores are the server's by construction.
  A value the server would refuse is an error naming the file, row group and row.
* ``workers`` > 1 deals the units (row groups, CSV files) to that many processes in contiguous,
  row-balanced shares; each writes its own part file and the parts are joined in input order.
* The output is written to a hidden temporary file beside it and renamed when complete, so a
  killed run never leaves a file under the output name; a rerun removes the stale temporaries.

Output columns: the ``keep`` pass-through columns, then one per task (``float32``; a multiclass
task is a ``fixed_size_list<float32>[C]`` of class probabilities), as the server's Arrow answer.
No torch, no recsys_mtl.
"""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from serving.batch_inputs import BatchInputError, Unit, UnitReader, csv_types, plan, resolve
from serving.metadata import ExportLoadError, load_metadata
from serving.predictor import Predictor
from serving.progress import Progress
from serving.schema import Feed, RequestError, Schema

#: rows per ONNX call (and per output row group at most)
BATCH_ROWS = 65_536


class BatchScoreError(ValueError):
    """Scoring cannot go on; the message names the file (and row group, row, column) at fault."""


@dataclass(frozen=True)
class ScoreJob:
    """What every worker needs (picklable: it crosses to spawned processes)."""

    export_dir: str
    tasks: tuple[str, ...]
    keep: tuple[str, ...]
    columns: tuple[str, ...]  # every column read: inputs, conditions the files hold, keep
    out_schema: pa.Schema
    types: dict[str, pa.DataType]
    batch_rows: int = BATCH_ROWS
    variant: str = "fp32"
    provider: str = "cpu"
    threads: int = 0


@dataclass
class ScoreResult:
    out: Path
    rows: int
    seconds: float
    files: int
    workers: int
    tasks: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


# ---------------------------------------------------------------------- one batch
def feed_of(schema: Schema, table: pa.Table, unit: Unit, offset: int = 0) -> Feed:
    """The server's feed for ``table`` (its input and condition columns), the rows of ``unit`` from
    ``offset`` on; a refused value is an error naming the file, row group and first refused row."""
    table = table.select([c for c in table.column_names if c in schema.names or c in schema.optional])
    try:
        return schema.from_arrow(table, max_rows=table.num_rows)[0]
    except RequestError as exc:
        row = offset + _first_bad_row(schema, table)
        in_file = f" (row {unit.first_row + row} of the file)" if unit.row_group is not None else ""
        raise BatchScoreError(f"{unit.where}, row {row}{in_file}: {exc.message}") from None


def _refused(schema: Schema, table: pa.Table) -> bool:
    try:
        schema.from_arrow(table, max_rows=table.num_rows)
    except RequestError:
        return True
    return False


def _first_bad_row(schema: Schema, table: pa.Table) -> int:
    """The first row the server refuses on its own, by bisection (value checks are row by row)."""
    lo, hi = 0, table.num_rows  # the first refused row lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _refused(schema, table.slice(lo, mid - lo)):
            hi = mid
        else:
            lo = mid
    return lo


def output_columns(outputs: dict[str, np.ndarray], tasks: Sequence[str]) -> list[pa.Array]:
    """(B,) → float32 column; (B, C) → fixed_size_list<float32>[C] (the server's Arrow answer)."""
    cols = []
    for name in tasks:
        v = np.ascontiguousarray(outputs[name], dtype=np.float32)
        flat = pa.array(v.reshape(-1))
        cols.append(pa.FixedSizeListArray.from_arrays(flat, v.shape[1]) if v.ndim == 2 else flat)
    return cols


def output_schema(metadata: dict[str, Any], tasks: Sequence[str], keep: Sequence[str], first: pa.Schema) -> pa.Schema:
    shapes = {o["name"]: o.get("shape", ["batch"]) for o in metadata["outputs"]}
    fields = [first.field(c) for c in keep]
    for t in tasks:
        shape = shapes[t]
        typ = pa.list_(pa.float32(), int(shape[1])) if len(shape) == 2 else pa.float32()
        fields.append(pa.field(t, typ))
    return pa.schema(fields)


# ---------------------------------------------------------------------- one share of the units
def score_units(job: ScoreJob, units: Sequence[Unit], path: Path, on_rows: Callable[[int], None]) -> int:
    """Score ``units`` in order into the Parquet file ``path``; returns the rows written."""
    predictor = Predictor(job.export_dir, variant=job.variant, provider=job.provider, intra_threads=job.threads)
    # string inputs stay dictionary-encoded from the file to the feed (not pass-through columns:
    # they are written as the first file holds them)
    text = [i.name for i in predictor.schema.inputs if i.kind in ("categorical", "sequence") and i.name not in job.keep]
    reader = UnitReader(job.columns, job.types, job.batch_rows, dictionary=text)
    rows = 0
    with pq.ParquetWriter(path, job.out_schema) as writer:
        for unit in units:
            offset = 0
            try:
                for batch in reader.batches(unit):
                    table = pa.Table.from_batches([batch])
                    outputs = predictor.predict(feed_of(predictor.schema, table, unit, offset))
                    kept = [_column(table, c, job.out_schema.field(c).type, unit.where) for c in job.keep]
                    writer.write_table(pa.Table.from_arrays(kept + output_columns(outputs, job.tasks), schema=job.out_schema))
                    offset += table.num_rows
                    rows += table.num_rows
                    on_rows(table.num_rows)
            except (pa.ArrowException, OSError) as exc:  # a corrupt page, a CSV value that does not parse
                raise BatchScoreError(f"{unit.where}: cannot be read after row {offset} ({_first_line(exc)})") from None
    return rows


def _column(table: pa.Table, name: str, typ: pa.DataType, where: str) -> pa.ChunkedArray:
    col = table.column(name)
    if col.type == typ:
        return col
    try:
        return col.cast(typ)
    except (pa.ArrowException, ValueError) as exc:
        raise BatchScoreError(f"{where}: pass-through column {name!r} is {col.type} here but {typ} in the first "
                              f"file; it cannot be written to one output ({_first_line(exc)})") from None


def _worker(job: ScoreJob, units: list[Unit], path: str, k: int, messages: Any) -> None:
    """A spawned process: score one share, report rows as they go, then ``done`` or ``error``."""
    pending = [0, time.perf_counter()]
    parent = os.getppid()

    def on_rows(n: int) -> None:  # batched reports: one queue message per ~0.2 s, not per batch
        if os.getppid() != parent:  # the parent was killed: its output is abandoned, stop
            os._exit(1)
        pending[0] += n
        if time.perf_counter() - pending[1] > 0.2:
            messages.put(("rows", k, pending[0]))
            pending[:] = [0, time.perf_counter()]

    try:
        rows = score_units(job, units, Path(path), on_rows)
        messages.put(("rows", k, pending[0]))
        messages.put(("done", k, rows))
    except (BatchScoreError, BatchInputError, ExportLoadError) as exc:
        messages.put(("error", k, str(exc)))
    except Exception as exc:  # anything else still reaches the parent as one line
        messages.put(("error", k, f"{type(exc).__name__}: {_first_line(exc)}"))
    messages.close()
    messages.join_thread()  # the last messages are in the pipe before this process exits


# ---------------------------------------------------------------------- the job
def shares(units: Sequence[Unit], n: int) -> list[list[Unit]]:
    """Contiguous runs of ``units`` of about equal weight, at most ``n`` of them, none empty."""
    total = sum(u.weight for u in units)
    out: list[list[Unit]] = [[]]
    done = 0
    for u in units:
        # start a new share once this one holds its part of the total
        if out[-1] and len(out) < n and done >= total * len(out) / n:
            out.append([])
        out[-1].append(u)
        done += u.weight
    return out


def temp_paths(out: Path, parts: int = 0) -> tuple[Path, list[Path]]:
    """The hidden temporary of ``out`` and of each worker's part (beside it, same filesystem)."""
    return out.with_name(f".{out.name}.partial"), [out.with_name(f".{out.name}.part{k}.partial") for k in range(parts)]


def _remove_stale(out: Path) -> None:
    """Temporaries a killed earlier run left behind (only this naming scheme's files)."""
    for p in out.parent.glob(f".{glob.escape(out.name)}.*partial"):
        p.unlink(missing_ok=True)


def score(export_dir: str | Path, inputs: Sequence[str], out: str | Path, *, keep: Sequence[str] = (),
          tasks: Sequence[str] | None = None, workers: int = 1, batch_rows: int = BATCH_ROWS, variant: str = "fp32",
          provider: str = "cpu", threads: int | None = None, overwrite: bool = False, progress: bool = True) -> ScoreResult:
    """Score ``inputs`` with the export into the Parquet file ``out`` (see the module docstring).

    ``threads``: onnxruntime intra-op threads per worker (default: the cores divided among the workers).
    """
    started = time.perf_counter()
    export_dir, out = Path(export_dir), Path(out)
    if workers < 1 or batch_rows < 1:
        raise BatchScoreError(f"workers and batch_rows must be at least 1 (got {workers}, {batch_rows})")
    metadata = load_metadata(export_dir)
    schema = Schema(metadata)
    all_tasks = [o["name"] for o in metadata["outputs"]]
    wanted = _check_tasks(tasks, all_tasks)
    clash = sorted(set(keep) & set(wanted))
    if clash:
        raise BatchScoreError(f"--keep column {clash[0]!r} has the name of a task output; rename it or leave it out")
    if out.exists() and not overwrite:
        raise BatchScoreError(f"{out}: already exists; choose another output or overwrite it")
    if out.is_dir():
        raise BatchScoreError(f"{out}: is a folder; the output is one Parquet file")

    files = resolve(inputs)
    types = csv_types(schema.inputs)
    units, first = plan(files, [*(i.name for i in schema.inputs), *dict.fromkeys(keep)], types)
    conditions = [c for c in schema.conditions if c in first.names]
    job = ScoreJob(str(export_dir), tuple(wanted), tuple(dict.fromkeys(keep)),
                   tuple(dict.fromkeys([*(i.name for i in schema.inputs), *conditions, *keep])),
                   output_schema(metadata, wanted, list(dict.fromkeys(keep)), first), types, batch_rows, variant, provider,
                   threads if threads is not None else (0 if workers == 1 else max(1, (os.cpu_count() or 1) // workers)))
    dealt = shares(units, workers) if units else [[]]
    total = sum(u.weight for u in units) if all(u.fmt == "parquet" for u in units) else None
    bar = Progress(total, enabled=progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp, parts = temp_paths(out, len(dealt) if len(dealt) > 1 else 0)
    try:
        if len(dealt) == 1:
            rows = score_units(job, dealt[0], tmp, bar.add)
        else:
            rows = _run_workers(job, dealt, parts, bar)
            _join(parts, tmp, job.out_schema)
        os.replace(tmp, out)
    finally:
        bar.close()
        for p in [tmp, *parts]:
            p.unlink(missing_ok=True)
    return ScoreResult(out, rows, time.perf_counter() - started, len(files), len(dealt), wanted)


def _check_tasks(tasks: Sequence[str] | None, all_tasks: list[str]) -> list[str]:
    """``--tasks`` as the server's ``?tasks=`` takes it: known names, in the order given, each once."""
    if tasks is None:
        return all_tasks
    names = [t.strip() for t in tasks if t.strip()]
    unknown = [t for t in names if t not in all_tasks]
    if not names or unknown:
        what = f"unknown task {unknown[0]!r}" if unknown else "no task named"
        raise BatchScoreError(f"tasks: {what}; this export scores {', '.join(all_tasks)}")
    return list(dict.fromkeys(names))


def _run_workers(job: ScoreJob, dealt: list[list[Unit]], parts: list[Path], bar: Progress) -> int:
    """One spawned process per share (spawn: onnxruntime's and pyarrow's thread pools are not fork-safe)."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, share, str(path), k, messages), daemon=True)
             for k, (share, path) in enumerate(zip(dealt, parts))]
    for p in procs:
        p.start()
    done: dict[int, int] = {}
    try:
        while len(done) < len(procs):
            try:
                kind, k, value = messages.get(timeout=0.5)
            except queue.Empty:
                # exited without a last word (killed, out of memory): its queue is flushed before a normal exit
                dead = [k for k, p in enumerate(procs) if k not in done and p.exitcode is not None]
                if dead:
                    raise BatchScoreError(f"worker {dead[0]} died (exit code {procs[dead[0]].exitcode}); "
                                          "nothing was written") from None
                continue
            if kind == "rows":
                bar.add(value)
            elif kind == "done":
                done[k] = value
            else:
                raise BatchScoreError(value)
    finally:
        for p in procs:
            if p.is_alive() and len(done) < len(procs):
                p.terminate()
        for p in procs:
            p.join()
    return sum(done.values())


def _join(parts: Sequence[Path], out: Path, schema: pa.Schema) -> None:
    """Concatenate the parts' row groups, in order, into ``out`` (one row group in memory at a time)."""
    with pq.ParquetWriter(out, schema) as writer:
        for part in parts:
            pf = pq.ParquetFile(part)
            for g in range(pf.metadata.num_row_groups):
                writer.write_table(pf.read_row_group(g))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:300] if text else "") or type(exc).__name__
