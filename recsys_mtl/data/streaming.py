"""Training from a Parquet dataset larger than memory: row groups streamed, shuffled, sharded.

The unit of work is one Parquet row group. Every epoch the row groups are put in a seeded order
and dealt round-robin over ``world_size × num_workers`` shards (DDP rank × DataLoader worker),
so each row is read exactly once per epoch across all shards. A shard reads its row groups one
at a time (only the columns the spec needs), encodes them with the fitted
:class:`~recsys_mtl.data.preprocess.Preprocessor`, and shuffles within a buffer of about
``buffer_rows`` rows before slicing batches, so memory is bounded by the buffer, not the data.

Under DDP every rank must run the same number of steps (a rank that stops early leaves the
others waiting in all-reduce), so :class:`StreamLoader` with ``equal_steps`` stops each rank
after the number of full batches the smallest rank can serve this epoch (computed from the
Parquet metadata); the remainder is dropped from that epoch, as ``DistributedSampler`` with
``drop_last`` does. With ``equal_steps=False`` every row is served (tests, single process).
"""

from __future__ import annotations

import copy
import glob
import multiprocessing
import multiprocessing.context
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import DataError


def parquet_files(path: str | Path) -> list[Path]:
    """A directory (every ``*.parquet`` below it), a glob pattern, or one file → sorted paths."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*.parquet"))
    elif any(ch in str(path) for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(path), recursive=True))
    else:
        files = [p] if p.is_file() else []
    if not files:
        raise DataError(f"{path}: no Parquet files found")
    return files


@dataclass(frozen=True)
class RowGroup:
    """One unit of streaming work: a row group of one file."""

    file: Path
    index: int
    rows: int


def row_groups(files: Sequence[Path]) -> list[RowGroup]:
    """Every row group of ``files`` from the Parquet footers (no data is read)."""
    out: list[RowGroup] = []
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
        except Exception as exc:  # pyarrow raises several types for a broken footer
            raise DataError(f"{f}: cannot read Parquet metadata: {str(exc).splitlines()[0]}") from None
        out += [RowGroup(f, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups) if meta.row_group(i).num_rows]
    if not out:
        raise DataError(f"{files[0].parent}: the Parquet files hold no rows")
    return out


def shard_of(groups: Sequence[RowGroup], epoch: int, seed: int, shard: int, num_shards: int) -> list[RowGroup]:
    """The row groups shard ``shard`` of ``num_shards`` reads in ``epoch`` (a seeded deal)."""
    order = np.random.default_rng([seed, epoch]).permutation(len(groups))
    return [groups[i] for i in order[shard::num_shards]]


class ParquetStream(IterableDataset):
    """Iterable of encoded batches from Parquet row groups (see the module docstring).

    Yields :data:`~recsys_mtl.data.tensors.Batch` dicts: ``categorical`` (B, C) int64,
    ``numeric`` (B, M) float32, ``seq.<name>`` (B, L) int64, ``labels``/``weights`` (B, T).
    """

    def __init__(
        self,
        files: Sequence[Path],
        preprocessor: Preprocessor,
        batch_size: int,
        buffer_rows: int = 1 << 18,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        num_workers: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or buffer_rows < 1:
            raise ValueError("batch_size and buffer_rows must be >= 1")
        self.files = list(files)
        self.groups = row_groups(self.files)
        self.preprocessor = preprocessor
        self.columns = preprocessor.spec.required_columns()
        self.batch_size = batch_size
        self.buffer_rows = max(buffer_rows, batch_size)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.epoch = 0

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def subset(self, fraction: float, seed: int) -> "ParquetStream":
        """A copy reading a seeded ``fraction`` of the row groups (at least one)."""
        keep = np.random.default_rng([seed, 1 << 20]).permutation(len(self.groups))[: max(1, round(len(self.groups) * fraction))]
        out = copy.copy(self)
        out.groups = [self.groups[i] for i in sorted(keep)]
        return out

    def train_loader(self, rank: int = 0, world_size: int = 1) -> "StreamLoader":
        """A loader for DDP process ``rank`` of ``world_size`` (equal step counts across ranks)."""
        shard = copy.copy(self)
        shard.rank, shard.world_size = rank, world_size
        return StreamLoader(shard, self.num_workers)

    def shard_rows(self, rank: int, num_workers: int) -> list[int]:
        """Rows each worker of ``rank`` reads this epoch (from metadata)."""
        n = self.world_size * num_workers
        return [sum(g.rows for g in shard_of(self.groups, self.epoch, self.seed, rank * num_workers + w, n)) for w in range(num_workers)]

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard = self.rank * num_workers + worker
        groups = shard_of(self.groups, self.epoch, self.seed, shard, self.world_size * num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        pending: list[Batch] = []
        held = 0
        for g in groups:
            pending.append(self._read(g))
            held += g.rows
            if held >= self.buffer_rows:
                buffer = _shuffled(pending, rng)
                full = (held // self.batch_size) * self.batch_size
                yield from _slices(buffer, 0, full, self.batch_size)
                pending = [{k: v[full:] for k, v in buffer.items()}] if held > full else []
                held -= full
        if held:
            buffer = _shuffled(pending, rng)
            stop = (held // self.batch_size) * self.batch_size if self.drop_last else held
            yield from _slices(buffer, 0, stop, self.batch_size)

    def _read(self, g: RowGroup) -> Batch:
        try:
            table = pq.ParquetFile(g.file).read_row_group(g.index, columns=self.columns)
        except Exception as exc:
            raise DataError(f"{g.file}: row group {g.index}: {str(exc).splitlines()[0]}") from None
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        return self.preprocessor.transform(df, f"{g.file} row group {g.index}").columns()


def _shuffled(parts: list[Batch], rng: np.random.Generator) -> Batch:
    """Concatenate buffered row groups and permute their rows: one gather per column."""
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    perm = torch.from_numpy(rng.permutation(len(cat["labels"])))
    return {k: v[perm] for k, v in cat.items()}


def _slices(columns: Batch, start: int, stop: int, size: int) -> Iterator[Batch]:
    for s in range(start, stop, size):
        yield {k: v[s : min(s + size, stop)] for k, v in columns.items()}


def worker_context() -> multiprocessing.context.BaseContext:
    """How the DataLoader workers start: forked from multiprocessing's fork server, which imported
    this module (torch, polars, pyarrow) once, not each a fresh interpreter (``spawn``: ~2 CPU s and
    seconds of wall time per worker, again every epoch, as the workers are not persistent: each
    epoch's stream is dealt anew). Not a plain fork of this process: polars' thread pool deadlocks
    in a child forked from a process that used it, and the fork server has only imported. Where
    there is no fork server (Windows), spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # read when the server starts (the first loader of this process): later calls change nothing
    context.set_forkserver_preload([__name__])
    return context


class StreamLoader:
    """The train loader over a :class:`ParquetStream`: DataLoader workers, epochs, equal DDP steps.

    ``len()`` is the number of batches this rank serves in the current epoch.
    """

    def __init__(self, stream: ParquetStream, num_workers: int = 0, equal_steps: bool = True):
        self.stream = stream
        self.num_workers = num_workers
        self.equal_steps = equal_steps and stream.world_size > 1

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def _worker_batches(self, rank: int, drop_last: bool) -> int:
        bs = self.stream.batch_size
        rows = self.stream.shard_rows(rank, max(self.num_workers, 1))
        return sum(r // bs if drop_last else -(-r // bs) for r in rows)

    def __len__(self) -> int:
        if self.equal_steps:
            return min(self._worker_batches(r, drop_last=True) for r in range(self.stream.world_size))
        return self._worker_batches(self.stream.rank, self.stream.drop_last)

    def __iter__(self) -> Iterator[Batch]:
        self.stream.drop_last = self.stream.drop_last or self.equal_steps
        limit = len(self)
        context = worker_context() if self.num_workers else None
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, multiprocessing_context=context)
        for i, batch in enumerate(loader):
            if i >= limit:
                break
            yield batch
        self.stream.epoch += 1  # the next epoch deals the row groups anew unless set_epoch says otherwise

