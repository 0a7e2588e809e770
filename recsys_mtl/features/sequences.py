"""How a sequence feature's column becomes rows of items: the one place, for the fit and the transform.

A list column is taken as it is. With the feature's ``separator``, a text column (or integers,
as a CSV reader may type a column of single ids) is split into items by the rule of
:func:`serving.contract.split_items`, the function the exported model's server applies: split on
the literal separator, strip :data:`~serving.contract.ITEM_WHITESPACE` from each item, drop empty
items; a null value is an empty sequence. Any other column type is refused naming the column.
"""

from __future__ import annotations

from typing import Protocol

import polars as pl

from recsys_mtl.errors import DataError
from serving.contract import ITEM_WHITESPACE


class ItemColumn(Protocol):
    """What reading a column as items needs: the feature's name, its column and optional separator."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def separator(self) -> str | None: ...


def _splittable(dtype: pl.DataType) -> bool:
    return dtype == pl.String or dtype == pl.Null or dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum))


def check_sequence_column(f: ItemColumn, dtype: pl.DataType, where: str) -> None:
    """``dtype`` (the column's) can be read as ``f``'s items; else a :class:`DataError` saying how."""
    if isinstance(dtype, pl.List) or (f.separator is not None and _splittable(dtype)):
        return
    what = f"{where}: column {f.source!r} ({getattr(f, 'kind', 'sequence')} feature {f.name!r})"
    if f.separator is None and _splittable(dtype) and dtype != pl.Null:
        raise DataError(f"{what} must be a list column, got {dtype}; to split delimited text such as 'a|b' into "
                        "items, set 'separator' on the feature (e.g. separator: '|')")
    text = "" if f.separator is None else f" or text split on {f.separator!r}"
    raise DataError(f"{what} must be a list column{text}, got {dtype}")


def sequence_items(f: ItemColumn, dtype: pl.DataType) -> pl.Expr:
    """Expression of ``f``'s column (of type ``dtype``, checked) as a list of items per row."""
    col = pl.col(f.source)
    if isinstance(dtype, pl.List):
        return col
    assert f.separator is not None, "check_sequence_column refuses text without a separator"
    item = pl.element().str.strip_chars(ITEM_WHITESPACE)
    return col.cast(pl.String).str.split(f.separator, inclusive=False).list.eval(item.filter(item != ""))
