"""Input files of offline scoring: Parquet / CSV files, folders and globs resolved to files, each
opened and checked before anything is scored, and cut into work units.

A work unit is one Parquet row group, or one whole CSV file (CSV has no row groups); a unit is
read in record batches of bounded size, so memory never grows with the file. Every error names
the file (and, for a value, the row group and row: :mod:`serving.batch_score`).

No torch, no recsys_mtl: pyarrow only.
"""

from __future__ import annotations

import glob
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from serving.contract import InputSpec

#: file suffix → format
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: CSV is parsed in blocks of this many bytes (one record batch each)
CSV_BLOCK_BYTES = 8 << 20
#: contract kind → Arrow type a CSV column is parsed as: the column's type is fixed up front, so a
#: block whose first values look like integers (or are all empty) cannot change it mid-file
CSV_TYPES = {"categorical": pa.string(), "numeric": pa.float64(), "sequence": pa.string()}


class BatchInputError(ValueError):
    """An input that cannot be scored; the message starts with the file at fault."""


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``row_group`` of a Parquet file, or (``row_group`` None) a whole CSV file.

    ``weight`` is its row count (Parquet) or byte size (CSV), used to deal units to workers;
    ``first_row``: the file's row index of the unit's first row."""

    path: str
    fmt: str
    row_group: int | None
    weight: int
    first_row: int = 0

    @property
    def where(self) -> str:
        return self.path if self.row_group is None else f"{self.path}, row group {self.row_group}"


def resolve(patterns: Sequence[str]) -> list[Path]:
    """Files named, found in folders (recursively, sorted; hidden and ``_``-prefixed names skipped)
    or matched by globs, in the order given, each once."""
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in FORMATS
                           and not any(part.startswith((".", "_")) for part in f.relative_to(path).parts))
            if not found:
                raise BatchInputError(f"{path}: folder holds no {'/'.join(FORMATS)} file")
        elif path.is_file():
            found = [path]
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not found:
                raise BatchInputError(f"{pattern}: no file matches")
        else:
            raise BatchInputError(f"{path}: no such file or folder")
        for f in found:
            if f.suffix.lower() not in FORMATS:
                raise BatchInputError(f"{f}: unknown format (expected one of {', '.join(FORMATS)})")
            out.append(f)
    return list(dict.fromkeys(out))


def csv_types(inputs: Sequence[InputSpec]) -> dict[str, pa.DataType]:
    return {i.name: CSV_TYPES[i.kind] for i in inputs}


def _csv_reader(path: Path, types: dict[str, pa.DataType], columns: Sequence[str] | None) -> pacsv.CSVStreamingReader:
    convert = pacsv.ConvertOptions(column_types=types, include_columns=list(columns) if columns is not None else None)
    return pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES), convert_options=convert)


def file_schema(path: Path, types: dict[str, pa.DataType]) -> pa.Schema:
    """The columns of ``path`` and their Arrow types (Parquet: its footer; CSV: header and first block)."""
    try:
        if FORMATS[path.suffix.lower()] == "parquet":
            return pq.ParquetFile(path).schema_arrow
        return _csv_reader(path, types, None).schema
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BatchInputError(f"{path}: not a readable {FORMATS[path.suffix.lower()]} file ({_first_line(exc)})") from None


def plan(files: Sequence[Path], required: Sequence[str], types: dict[str, pa.DataType]) -> tuple[list[Unit], pa.Schema]:
    """Open every file, check it holds every ``required`` column, and list its units; returns the
    units in input order and the first file's schema. Nothing is scored before all files pass."""
    units: list[Unit] = []
    first: pa.Schema | None = None
    for path in files:
        schema = file_schema(path, types)
        first = first or schema
        missing = [c for c in required if c not in schema.names]
        if missing:
            more = f" (and {len(missing) - 1} more: {', '.join(map(repr, missing[1:4]))})" if len(missing) > 1 else ""
            raise BatchInputError(f"{path}: column {missing[0]!r} is missing{more}")
        fmt = FORMATS[path.suffix.lower()]
        if fmt == "parquet":
            meta = pq.ParquetFile(path).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            starts = [0, *itertools.accumulate(sizes)]
            units += [Unit(str(path), fmt, g, n, starts[g]) for g, n in enumerate(sizes) if n > 0]
        else:
            units.append(Unit(str(path), fmt, None, max(1, path.stat().st_size)))
    if first is None:
        raise BatchInputError("no input file")
    return units, first


def dictionary_paths(pf: pq.ParquetFile, columns: Sequence[str]) -> list[str]:
    """The Parquet leaf paths of ``columns`` that hold strings (a string column, or a list column's
    string items), for ``read_dictionary``: such a column then arrives dictionary-encoded as the
    file stores it, so a batch costs one Python string per distinct value rather than per row."""
    arrow = pf.schema_arrow
    wanted = {c for c in columns if c in arrow.names and _strings(arrow.field(c).type)}
    paths = [pf.schema.column(i).path for i in range(len(pf.schema))]
    return [p for p in paths if p.split(".")[0] in wanted]


def _strings(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class UnitReader:
    """Reads units as record batches of at most ``batch_rows`` rows, keeping the last Parquet file open.

    ``dictionary``: columns read dictionary-encoded from Parquet where they hold strings (see
    :func:`dictionary_paths`); the values are the same, only their Arrow encoding differs."""

    def __init__(self, columns: Sequence[str], types: dict[str, pa.DataType], batch_rows: int,
                 dictionary: Sequence[str] = ()):
        self.columns = list(columns)
        self.types = types
        self.batch_rows = batch_rows
        self.dictionary = list(dictionary)
        self._open: tuple[str, pq.ParquetFile] | None = None

    def batches(self, unit: Unit) -> Iterator[pa.RecordBatch]:
        """Record batches of ``unit`` holding :attr:`columns` (those the file has)."""
        if unit.fmt == "parquet":
            if self._open is None or self._open[0] != unit.path:
                pf = pq.ParquetFile(unit.path)
                paths = dictionary_paths(pf, self.dictionary)
                self._open = (unit.path, pq.ParquetFile(unit.path, read_dictionary=paths) if paths else pf)
            pf = self._open[1]
            wanted = [c for c in self.columns if c in pf.schema_arrow.names]
            yield from pf.iter_batches(batch_size=self.batch_rows, row_groups=[unit.row_group], columns=wanted,
                                       use_threads=False)
        else:
            reader = _csv_reader(Path(unit.path), self.types, None)
            wanted = [c for c in self.columns if c in reader.schema.names]
            for batch in reader:
                batch = batch.select(wanted)
                for start in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(start, self.batch_rows)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:300] if text else "") or type(exc).__name__
