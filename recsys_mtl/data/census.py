"""UCI census-income (KDD): the MMoE paper's dataset, read straight from its compressed files."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import polars as pl

from recsys_mtl.data.decoded_cache import read_decoded
from recsys_mtl.errors import DataError

#: column order used by keras-mmoe, torch-rechub and DeepCTR (see the dataset README).
CENSUS_COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin",
    "sex", "union_member", "unemp_reason", "full_or_part_emp", "capital_gains",
    "capital_losses", "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res",
    "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg",
    "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18",
    "country_father", "country_mother", "country_self", "citizenship", "own_or_self",
    "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
]  # fmt: skip

TRAIN_FILE = "census-income.data.bz2"
TEST_FILE = "census-income.test.gz"
#: the decoded frame's format: bump it when ``_decode`` returns another frame (columns, dtypes,
#: stripping), so that no cached copy of the old format is read again
DECODED_VERSION = 1


def read_census_file(path: Path, cache_dir: Path | None = None) -> pl.DataFrame:
    """Read one census file (.bz2/.gz/plain): no header, ', '-separated, every field a string.

    With ``cache_dir``, the decoded frame is kept there as Parquet (:mod:`recsys_mtl.data.decoded_cache`):
    the next read of the same file skips the ~5 CPU s of decompressing and parsing the training file.
    """
    return read_decoded(path, cache_dir, _decode, tag=f"census-v{DECODED_VERSION}")


def _decode(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: census file not found")
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        df = pl.read_csv(
            raw, has_header=False, new_columns=CENSUS_COLUMNS, infer_schema=False, quote_char=None
        )
    except Exception as exc:
        raise DataError(f"{path}: not in census format: {str(exc).splitlines()[0]}") from None
    return df.with_columns(pl.all().str.strip_chars())


def read_census(
    folder: Path, split_seed: int, cache_dir: Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """train = the .data file; the .test file shuffled with ``split_seed`` and halved into valid/test."""
    train = read_census_file(folder / TRAIN_FILE, cache_dir)
    rest = read_census_file(folder / TEST_FILE, cache_dir).sample(fraction=1.0, shuffle=True, seed=split_seed)
    half = rest.height // 2
    return train, rest.head(half), rest.tail(rest.height - half)
