"""One contract between a pipeline's ``data`` section and every stage that reads data.

A :class:`DataSource` is registered for each data config type (``@register_source(FilesData)``)
and gives each stage what it needs, and nothing more:

- ``fit``: :meth:`~DataSource.fit_preprocessing` (in memory or a streaming pass) and
  :meth:`~DataSource.training` (an :class:`EncodedTable` or a :class:`ParquetStream`);
- ``fit`` / ``tune`` / ``report``: :meth:`~DataSource.valid`, :meth:`~DataSource.test`;
- ``export``: :meth:`~DataSource.test` and :meth:`~DataSource.held_out_sample`, which never read
  training rows when the held-out data is stored apart from train;
- ``validate --data``: :meth:`~DataSource.check`.

Stages call :func:`data_source` and never look at the config type. A new kind of data is a
config class in :mod:`recsys_mtl.spec.pipeline` plus a source registered here (or in any module
imported before use).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Generic, TypeVar

import polars as pl
import torch
from pydantic import BaseModel

from recsys_mtl.data.census import TEST_FILE, TRAIN_FILE, read_census_file
from recsys_mtl.data.preprocess import Preprocessor, check_frame
from recsys_mtl.data.readers import read_table, write_parquet_atomic
from recsys_mtl.data.streaming import ParquetStream, parquet_files, row_groups
from recsys_mtl.data.synthetic import SyntheticConfig, write_parquet
from recsys_mtl.data import synthetic_drift, synthetic_sequences
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import CensusData, FilesData, ParquetStreamData, SyntheticData, SyntheticDriftData, SyntheticSequencesData

C = TypeVar("C", bound=BaseModel)
#: what a training loader is built from: rows in memory, or a stream of row groups
TrainInput = EncodedTable | ParquetStream


@dataclass(frozen=True)
class Splits:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height}


def random_split(df: pl.DataFrame, valid: float, test: float, seed: int) -> Splits:
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=seed)
    n_valid, n_test = int(df.height * valid), int(df.height * test)
    return Splits(
        train=shuffled.slice(n_valid + n_test),
        valid=shuffled.slice(0, n_valid),
        test=shuffled.slice(n_valid, n_test),
    )


# ---------------------------------------------------------------------- contract
class DataSource(ABC, Generic[C]):
    """What the stages read from one data section. Frames are read at most once per instance."""

    def __init__(self, cfg: C):
        self.cfg = cfg

    @abstractmethod
    def fit_preprocessing(self, spec: FeatureSpec) -> Preprocessor:
        """Preprocessing fitted on the training rows only."""

    @abstractmethod
    def training(self, pre: Preprocessor, batch_size: int, seed: int, fraction: float = 1.0) -> TrainInput:
        """The training input encoded with ``pre``; ``fraction`` < 1 keeps a seeded share of it."""

    @abstractmethod
    def valid(self) -> pl.DataFrame: ...

    @abstractmethod
    def test(self) -> pl.DataFrame: ...

    @abstractmethod
    def sizes(self) -> dict[str, int]:
        """Rows per split (train counted without loading it where the source can)."""

    def held_out_sample(self, rows: int) -> pl.DataFrame:
        """At most ``rows`` rows of the test split (export parity)."""
        return self.test().head(rows)

    def check(self, spec: FeatureSpec) -> dict[str, int]:
        """Every split has the spec's columns with usable dtypes; returns :meth:`sizes`."""
        for name, df in (("valid", self.valid()), ("test", self.test())):
            check_frame(spec, df, f"{name} split")
        return self.sizes()


class InMemorySource(DataSource[C]):
    """Sources whose splits fit in memory: one :class:`Splits`, read on first use."""

    @abstractmethod
    def load(self) -> Splits: ...

    @cached_property
    def splits(self) -> Splits:
        return self.load()

    def fit_preprocessing(self, spec: FeatureSpec) -> Preprocessor:
        return Preprocessor.fit(spec, self.splits.train, where="train split")

    def training(self, pre: Preprocessor, batch_size: int, seed: int, fraction: float = 1.0) -> EncodedTable:
        table = pre.transform(self.splits.train, "train split")
        if fraction >= 1:
            return table
        n = len(table)
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: max(1, round(n * fraction))]
        return table.permuted(keep.sort().values)

    def valid(self) -> pl.DataFrame:
        return self.splits.valid

    def test(self) -> pl.DataFrame:
        return self.splits.test

    def sizes(self) -> dict[str, int]:
        return self.splits.sizes()

    def check(self, spec: FeatureSpec) -> dict[str, int]:
        check_frame(spec, self.splits.train, "train split")
        return super().check(spec)


class FramesSource(InMemorySource[BaseModel]):
    """Splits already in memory (tests, benchmarks, a tuning study that shares its frames)."""

    def __init__(self, splits: Splits):
        super().__init__(BaseModel())
        self._given = splits

    def load(self) -> Splits:
        return self._given


# ---------------------------------------------------------------------- registry
_SOURCES: dict[type[BaseModel], type[DataSource]] = {}  # type: ignore[type-arg]


def register_source(config_type: type[C]) -> Callable[[type[DataSource[C]]], type[DataSource[C]]]:
    def deco(cls: type[DataSource[C]]) -> type[DataSource[C]]:
        if config_type in _SOURCES:
            raise ValueError(f"a data source for {config_type.__name__} is registered twice")
        _SOURCES[config_type] = cls
        return cls

    return deco


def data_source(cfg: BaseModel) -> DataSource:  # type: ignore[type-arg]
    """The registered source of a data section."""
    try:
        cls = _SOURCES[type(cfg)]
    except KeyError:
        kind = getattr(cfg, "kind", type(cfg).__name__)
        raise SpecError(f"data.kind: no data source is registered for {kind!r}") from None
    return cls(cfg)


def load_splits(cfg: BaseModel) -> Splits:
    """Every split in memory (in-memory sources only; benchmarks and tests)."""
    source = data_source(cfg)
    if not isinstance(source, InMemorySource):
        raise DataError(f"data.kind {getattr(cfg, 'kind', '?')!r}: train is streamed and never loaded whole")
    return source.splits


# ---------------------------------------------------------------------- sources
@register_source(FilesData)
class FilesSource(InMemorySource[FilesData]):
    def load(self) -> Splits:
        cfg = self.cfg
        train = read_table(cfg.train)
        if cfg.valid is not None and cfg.test is not None:
            return Splits(train, self.valid(), self.test())
        # only one given: carve the other from train, never from the given held-out file
        rest = random_split(train, cfg.valid_fraction, cfg.test_fraction, cfg.split_seed)
        if cfg.valid is None and cfg.test is None:
            return rest
        return Splits(rest.train, self.valid() if cfg.valid else rest.valid, self.test() if cfg.test else rest.test)

    # a held-out file given on its own is read without the train file
    def valid(self) -> pl.DataFrame:
        return self._held_out("valid") if self.cfg.valid is not None else self.splits.valid

    def test(self) -> pl.DataFrame:
        return self._held_out("test") if self.cfg.test is not None else self.splits.test

    @cached_property
    def _held(self) -> dict[str, pl.DataFrame]:
        return {}

    def _held_out(self, split: str) -> pl.DataFrame:
        if split not in self._held:
            self._held[split] = read_table(getattr(self.cfg, split))
        return self._held[split]


@register_source(CensusData)
class CensusSource(InMemorySource[CensusData]):
    """train = the .data file; the .test file shuffled with ``split_seed`` and halved into valid/test."""

    @cached_property
    def _held_out(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        rest = read_census_file(self.cfg.path / TEST_FILE, self.cfg.cache_dir).sample(fraction=1.0, shuffle=True, seed=self.cfg.split_seed)
        half = rest.height // 2
        return rest.head(half), rest.tail(rest.height - half)

    def load(self) -> Splits:
        return Splits(read_census_file(self.cfg.path / TRAIN_FILE, self.cfg.cache_dir), *self._held_out)

    def valid(self) -> pl.DataFrame:
        return self._held_out[0]

    def test(self) -> pl.DataFrame:
        return self._held_out[1]


@register_source(SyntheticData)
class SyntheticSource(InMemorySource[SyntheticData]):
    def load(self) -> Splits:
        cfg = self.cfg
        # the generator knobs the pipeline exposes (same names); the rest keep the generator's defaults
        gen = SyntheticConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(SyntheticConfig) if f.name in type(cfg).model_fields})
        # every generator setting is in the name, so a cached file is never reused for other settings
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(gen), sort_keys=True).encode()).hexdigest()[:12]
        path = cfg.cache_dir / f"synthetic_r{gen.rows}_t{gen.num_tasks}_s{gen.seed}_{digest}.parquet"
        if not path.exists():
            write_parquet(gen, path)
        return random_split(read_table(path), cfg.valid_fraction, cfg.test_fraction, cfg.seed)


@register_source(SyntheticDriftData)
class SyntheticDriftSource(InMemorySource[SyntheticDriftData]):
    """Generated drift data, split by its ``period`` column (train earlier, valid next, test last)."""

    def load(self) -> Splits:
        cfg = self.cfg
        # the generator knobs the pipeline exposes (same names); the rest keep the generator's defaults
        gen = synthetic_drift.DriftConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(synthetic_drift.DriftConfig) if f.name in type(cfg).model_fields})
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(gen), sort_keys=True).encode()).hexdigest()[:12]
        path = cfg.cache_dir / f"synthetic_drift_v{synthetic_drift.VERSION}_r{gen.rows}_s{gen.seed}_{digest}.parquet"
        if not path.exists():
            synthetic_drift.write_parquet(gen, path)
        return Splits(*synthetic_drift.time_split(read_table(path), "period", cfg.valid_periods, cfg.test_periods))


@register_source(SyntheticSequencesData)
class SyntheticSequencesSource(InMemorySource[SyntheticSequencesData]):
    """Generated behaviour-sequence data, split at random (70/15/15 by default) with ``split_seed``."""

    def load(self) -> Splits:
        cfg = self.cfg
        fields = dataclasses.fields(synthetic_sequences.SequenceDataConfig)
        gen = synthetic_sequences.SequenceDataConfig(**{f.name: getattr(cfg, f.name) for f in fields if f.name in type(cfg).model_fields})
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(gen), sort_keys=True).encode()).hexdigest()[:12]
        path = cfg.cache_dir / f"synthetic_sequences_r{gen.rows}_s{gen.seed}_{digest}.parquet"
        if not path.exists():
            write_parquet_atomic(synthetic_sequences.generate_sequences(gen), path, "the synthetic data cache")
        return random_split(read_table(path), cfg.valid_fraction, cfg.test_fraction, cfg.split_seed)


@register_source(ParquetStreamData)
class ParquetStreamSource(DataSource[ParquetStreamData]):
    """Train streamed by row group (never loaded whole); valid and test read into memory."""

    @cached_property
    def train_files(self) -> list[Path]:
        return parquet_files(self.cfg.train)

    def fit_preprocessing(self, spec: FeatureSpec) -> Preprocessor:
        return Preprocessor.fit_files(spec, self.train_files)

    def training(self, pre: Preprocessor, batch_size: int, seed: int, fraction: float = 1.0) -> ParquetStream:
        stream = ParquetStream(
            self.train_files, pre, batch_size, buffer_rows=self.cfg.shuffle_buffer_rows, seed=seed,
            num_workers=self.cfg.num_workers,
        )
        return stream if fraction >= 1 else stream.subset(fraction, seed)

    @cached_property
    def _frames(self) -> dict[str, pl.DataFrame]:
        return {}

    def _read(self, split: str) -> pl.DataFrame:
        if split not in self._frames:
            self._frames[split] = _read_parquet(getattr(self.cfg, split))
        return self._frames[split]

    def valid(self) -> pl.DataFrame:
        return self._read("valid")

    def test(self) -> pl.DataFrame:
        return self._read("test")

    def held_out_sample(self, rows: int) -> pl.DataFrame:
        if "test" in self._frames:
            return self._frames["test"].head(rows)
        return _read_parquet(self.cfg.test, rows)

    def sizes(self) -> dict[str, int]:
        return {"train": sum(g.rows for g in row_groups(self.train_files)), "valid": self.valid().height, "test": self.test().height}

    def check(self, spec: FeatureSpec) -> dict[str, int]:
        # every train file's schema and first rows; the footers are read by sizes()
        for f in self.train_files:
            check_frame(spec, _read_parquet(f, 1000), f"train file {f}")
        return super().check(spec)


def _read_parquet(path: Path, rows: int | None = None) -> pl.DataFrame:
    files = [str(f) for f in parquet_files(path)]
    try:
        lf = pl.scan_parquet(files)
        return (lf.head(rows) if rows is not None else lf).collect()
    except Exception as exc:  # polars raises several types for unreadable files
        raise DataError(f"{path}: cannot read as Parquet: {str(exc).splitlines()[0]}") from None
