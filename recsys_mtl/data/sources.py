"""Turn a pipeline's ``data`` section into train / validation / test frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import polars as pl

from recsys_mtl.data.census import read_census
from recsys_mtl.data.readers import read_table
from recsys_mtl.data.synthetic import SyntheticConfig, write_parquet
from recsys_mtl.spec.pipeline import CensusData, DataConfig, FilesData, SyntheticData


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


def _files(cfg: FilesData) -> Splits:
    train = read_table(cfg.train)
    if cfg.valid is not None and cfg.test is not None:
        return Splits(train, read_table(cfg.valid), read_table(cfg.test))
    if cfg.valid is not None or cfg.test is not None:
        # only one given: carve the other from train, never from the given held-out file
        rest = random_split(train, cfg.valid_fraction, cfg.test_fraction, cfg.split_seed)
        valid = read_table(cfg.valid) if cfg.valid is not None else rest.valid
        test = read_table(cfg.test) if cfg.test is not None else rest.test
        return Splits(rest.train, valid, test)
    return random_split(train, cfg.valid_fraction, cfg.test_fraction, cfg.split_seed)


def _census(cfg: CensusData) -> Splits:
    return Splits(*read_census(cfg.path, cfg.split_seed))


def _synthetic(cfg: SyntheticData) -> Splits:
    gen = SyntheticConfig(
        rows=cfg.rows,
        num_tasks=cfg.num_tasks,
        task_correlation=cfg.task_correlation,
        complexity=cfg.complexity,
        scale=cfg.scale,
        noise=cfg.noise,
        positive_rate=cfg.positive_rate,
        seed=cfg.seed,
    )
    # every generator knob is in the name, so a cached file is never reused for other settings
    name = (
        f"synthetic_r{gen.rows}_t{gen.num_tasks}_p{gen.task_correlation}_c{gen.complexity}"
        f"_a{gen.scale}_n{gen.noise}_q{gen.positive_rate}_s{gen.seed}.parquet"
    )
    path = cfg.cache_dir / name
    if not path.exists():
        write_parquet(gen, path)
    return random_split(read_table(path), cfg.valid_fraction, cfg.test_fraction, cfg.seed)


_SOURCES: dict[type, Callable[..., Splits]] = {
    FilesData: _files,
    CensusData: _census,
    SyntheticData: _synthetic,
}


def load_splits(cfg: DataConfig) -> Splits:
    return _SOURCES[type(cfg)](cfg)
