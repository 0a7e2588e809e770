"""Request validation built from an export's ``metadata.json``; turns rows into the ONNX feed.

Rules (the same for JSON rows and Arrow columns):

* every input column must be present and no other; ``null`` is a missing value;
* categorical: a string (an integer is accepted and written as its decimal string);
* numeric: a finite number (``NaN``/``Infinity`` are rejected: write ``null`` for missing);
* sequence: a list of strings / integers / nulls (or ``null`` for an empty list); items past the
  feature's ``max_len`` are dropped, as in training (:attr:`serving.contract.InputSpec.kept`); an
  input with a ``separator`` also takes a delimited string (or an integer, as its decimal string),
  split as training splits it (:func:`serving.contract.split_items`);
* timestamp: a finite number of seconds since 1970-01-01 UTC; an Arrow column may also be a
  ``timestamp`` (any unit; naive = UTC) or ``date`` column, converted to epoch seconds;
* vector: a list of exactly ``size`` finite numbers (or ``null`` for a missing vector, fed as a row
  of NaN); an input with a ``separator`` also takes one delimited string of numbers; an Arrow column
  is a (fixed-size) list of numbers (or delimited strings);
* a condition of the export (e.g. ``preference``, see :class:`serving.contract.ConditionSpec`) may
  be given per row as a list of its K finite numbers; rows without it (or ``null``) get its default.

A violation raises :class:`RequestError` naming the field (and the row for JSON).
No torch, no recsys_mtl: this module only needs numpy and pyarrow. The inputs are :mod:`serving.contract`'s.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.contract import ConditionSpec, InputSpec, conditions_from_json, inputs_from_json, inputs_to_json
from serving.limits import FLOAT32_LIMIT

Feed = dict[str, np.ndarray]


#: longest echo of client input (a field name, a value) inside an error message
ECHO_CHARS = 80


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with its full length said) and made encodable: an error
    message never grows with the request, and a lone surrogate from a JSON escape cannot break it."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def quoted(name: Any) -> str:
    """A client-given name for an error message: repr-quoted, clipped."""
    return clip(repr(name) if isinstance(name, str) else repr(str(name)))


class RequestError(ValueError):
    """A bad request: ``status`` is the HTTP status, ``field`` the offending input (if any) and
    ``code`` a stable machine-readable kind (``wrong_type``, ``unknown_field``, ...); ``close``: the
    connection cannot be reused after it (its body was not read to the end)."""

    def __init__(self, message: str, field: str | None = None, status: int = 422, code: str = "invalid_value",
                 close: bool = False):
        message = clip(message, 4 * ECHO_CHARS + 200)
        super().__init__(message)
        self.message = message
        self.field = None if field is None else clip(field)
        self.status = status
        self.code = code
        self.close = close

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            out["field"] = self.field
        return out


class HugeInt:
    """Stands for a JSON integer too long for Python's int conversion (validation rejects it by field)."""

    __slots__ = ("digits",)

    def __init__(self, text: str):
        self.digits = len(text.lstrip("-"))


# ---------------------------------------------------------------------- JSON values
def _categorical(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string (or null), got {_json_type(value)}")


def _numeric(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number (or null), got {_json_type(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise TypeError(f"an integer of {len(str(abs(value)))} digits is out of the float64 range") from None
    if not math.isfinite(value):
        raise TypeError(f"{value} is not allowed; write null for a missing value")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, HugeInt):
        return f"an integer of {value.digits} digits"
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class Schema:
    """The inputs of one exported model, and conversion of requests into its feed."""

    def __init__(self, metadata: dict[str, Any]):
        self.inputs = inputs_from_json(metadata["inputs"])
        self.by_name = {i.name: i for i in self.inputs}
        self.names = frozenset(self.by_name)
        self.conditions: dict[str, ConditionSpec] = {c.name: c for c in conditions_from_json(metadata.get("conditions"))}
        self.optional = frozenset(self.conditions)
        self._json: dict[str, Callable[[InputSpec, list[Any]], np.ndarray]] = {
            "categorical": self._json_categorical,
            "numeric": self._json_numeric,
            "sequence": self._json_sequence,
            "timestamp": self._json_numeric,
            "vector": self._json_vector,
        }
        self._arrow: dict[str, Callable[[InputSpec, pa.ChunkedArray], np.ndarray]] = {
            "categorical": _arrow_categorical,
            "numeric": _arrow_numeric,
            "sequence": _arrow_sequence,
            "timestamp": _arrow_timestamp,
            "vector": _arrow_vector,
        }

    @classmethod
    def for_inputs(cls, inputs: list[InputSpec]) -> Schema:
        """The schema a server builds from ``inputs`` written to metadata.json (through the same JSON)."""
        return cls({"inputs": inputs_to_json(inputs)})

    # ------------------------------------------------------------------ JSON
    def from_json(self, body: Any, max_rows: int, check_text: bool = False) -> tuple[Feed, int]:
        """A JSON object (one row) or a non-empty array of objects → (feed, rows).

        ``check_text``: also reject strings that cannot be encoded as UTF-8 (lone surrogates, which
        only a ``\\udXXX`` escape can produce; the caller asks when the body holds such an escape).
        """
        rows = [body] if isinstance(body, dict) else body
        if not isinstance(rows, list):
            raise RequestError(f"body must be a JSON object (one row) or an array of objects, got {_json_type(body)}",
                               field="body", status=400, code="not_rows")
        if not rows:
            raise RequestError("no rows: the array is empty", field="body", status=400, code="no_rows")
        if len(rows) > max_rows:
            raise RequestError(f"batch of {len(rows)} rows exceeds the limit of {max_rows}", field="body", status=413, code="too_many_rows")
        for r, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RequestError(f"row {r}: expected an object, got {_json_type(row)}", field="body", status=400, code="not_rows")
            if row.keys() != self.names and not (self.names <= row.keys() <= self.names | self.optional):
                self._key_error(row, r)
        feed = {i.name: self._json[i.kind](i, [row[i.name] for row in rows]) for i in self.inputs}
        for c in self.conditions.values():
            feed[c.name] = _json_condition(c, [row.get(c.name) for row in rows])
        if check_text:
            self._check_text(feed)
        return feed, len(rows)

    def _key_error(self, row: dict[str, Any], r: int) -> None:
        missing = sorted(self.names - row.keys())
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise RequestError(f"row {r}: missing field {missing[0]!r}{more}", missing[0], code="missing_field")
        extra = row.keys() - self.names - self.optional
        first = min(extra)  # not sorted: a hostile row may carry a million names
        raise RequestError(f"row {r}: unknown field {quoted(first)}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""),
                           first, code="unknown_field")

    def _check_text(self, feed: Feed) -> None:
        for spec in self.inputs:
            if spec.dtype != "string":
                continue
            values = feed[spec.name]
            for k, v in enumerate(values.ravel().tolist()):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    r = k // (values.shape[1] if values.ndim == 2 else 1)
                    raise RequestError(f"row {r}: field {spec.name!r}: a string is not valid Unicode (lone surrogate escape)",
                                       spec.name, code="wrong_type") from None

    @staticmethod
    def _each(spec: InputSpec, values: list[Any], convert: Callable[[Any], Any]) -> list[Any]:
        out = []
        for r, v in enumerate(values):
            try:
                out.append(convert(v))
            except TypeError as exc:
                raise RequestError(f"row {r}: field {spec.name!r}: {exc}", spec.name, code="wrong_type") from None
        return out

    def _json_categorical(self, spec: InputSpec, values: list[Any]) -> np.ndarray:
        arr = np.empty(len(values), dtype=object)
        if all(type(v) is str for v in values):  # the common case, checked in one pass
            arr[:] = values
        else:  # nulls, integers, or an error to name
            arr[:] = self._each(spec, values, lambda v: _categorical(v, spec.missing))
        return arr

    def _json_numeric(self, spec: InputSpec, values: list[Any]) -> np.ndarray:
        if all(type(v) is float or type(v) is int or v is None for v in values):
            try:
                x = np.array(values, dtype=np.float64)  # None -> NaN
            except OverflowError:  # an integer beyond float64: the per-value path names it
                pass
            else:
                # a NaN / Infinity literal (not a null) falls through to the per-value path, which names it
                if int((~np.isfinite(x)).sum()) == values.count(None):
                    return x
        return np.asarray(self._each(spec, values, _numeric), dtype=np.float64)

    def _json_sequence(self, spec: InputSpec, values: list[Any]) -> np.ndarray:
        def convert(v: Any) -> list[str]:
            if v is None:
                return []
            if spec.separator is not None and (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))):
                return list(spec.head(spec.split(str(v))))
            if not isinstance(v, list):
                text = f" or a string delimited by {spec.separator!r}" if spec.separator is not None else ""
                raise TypeError(f"expected a list{text} (or null), got {_json_type(v)}")
            return [_categorical(x, spec.missing) for x in spec.head(v)]

        return pad_lists(self._each(spec, values, convert), spec.missing)

    def _json_vector(self, spec: InputSpec, values: list[Any]) -> np.ndarray:
        size: int = spec.size  # type: ignore[assignment]
        # the common case in one conversion: every row a list of `size` plain numbers, all finite
        if all(type(v) is list and len(v) == size and all(type(x) is float or type(x) is int for x in v) for v in values):
            try:
                x = np.array(values, dtype=np.float64).reshape(len(values), size)
            except OverflowError:  # an integer beyond float64: the per-row path names it
                pass
            else:
                if np.isfinite(x).all():
                    return x

        def convert(v: Any) -> list[float]:
            if v is None:
                return [math.nan] * spec.size  # type: ignore[operator]
            if spec.separator is not None and isinstance(v, str):
                return _vector_text(spec, v)
            if not isinstance(v, list):
                text = f" or a string delimited by {spec.separator!r}" if spec.separator is not None else ""
                raise TypeError(f"expected a list of {spec.size} numbers{text} (or null), got {_json_type(v)}")
            if len(v) != spec.size:
                raise TypeError(f"expected a list of {spec.size} numbers, got {len(v)}")
            if any(x is None for x in v):
                raise TypeError("a vector item is null; write null for the whole vector when it is missing")
            return [_numeric(x) for x in v]

        return np.asarray(self._each(spec, values, convert), dtype=np.float64).reshape(len(values), spec.size)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ Arrow
    def from_arrow(self, table: pa.Table, max_rows: int) -> tuple[Feed, int]:
        if table.num_rows == 0:
            raise RequestError("no rows: the Arrow table is empty", field="body", status=400, code="no_rows")
        if table.num_rows > max_rows:
            raise RequestError(f"batch of {table.num_rows} rows exceeds the limit of {max_rows}", field="body", status=413, code="too_many_rows")
        names = table.column_names
        if len(names) != len(set(names)):
            seen: set[str] = set()
            dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise RequestError(f"column {quoted(dup)} appears more than once", dup, code="duplicate_field")
        cols = set(names)
        for name in sorted(self.names - cols):
            raise RequestError(f"missing column {name!r}", name, code="missing_field")
        if cols - self.names - self.optional:
            name = min(cols - self.names - self.optional)
            raise RequestError(f"unknown column {quoted(name)}", name, code="unknown_field")
        feed = {}
        for spec in self.inputs:
            try:
                feed[spec.name] = self._arrow[spec.kind](spec, table.column(spec.name))
            except (TypeError, ValueError, pa.ArrowException) as exc:  # a cast or UTF-8 failure is the column's too
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise RequestError(f"column {spec.name!r}: {detail}", spec.name, code="wrong_type") from None
        for c in self.conditions.values():
            values = table.column(c.name).to_pylist() if c.name in cols else [None] * table.num_rows
            feed[c.name] = _json_condition(c, values)
        return feed, table.num_rows

    # ------------------------------------------------------------------ placeholders
    def blank(self, rows: int) -> Feed:
        """A feed of ``rows`` all-missing rows (warm-up)."""
        feed = {
            i.name: (np.full([rows, *i.shape[1:]], np.nan) if i.dtype == "float64" else
                     np.full((rows, 1) if i.kind == "sequence" else rows, i.missing, dtype=object))
            for i in self.inputs
        }
        return feed | {c.name: _json_condition(c, [None] * rows) for c in self.conditions.values()}


def _json_condition(spec: ConditionSpec, values: list[Any]) -> np.ndarray:
    """Per-row condition values (a list of K finite numbers, or None for the default) → (B, K) float32."""
    k = len(spec.default)
    out = np.tile(np.asarray(spec.default, np.float32), (len(values), 1))
    for r, v in enumerate(values):
        if v is None:
            continue
        if (not isinstance(v, list) or len(v) != k
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                           and abs(x) <= FLOAT32_LIMIT for x in v)):  # held as float32; False for NaN, ±inf, huge ints
            raise RequestError(f"row {r}: {spec.name!r} must be a list of {k} finite numbers within float32's range (or null for the default)",
                               spec.name, code="wrong_type")
        out[r] = v
    return out


def pad_lists(lists: list[list[str]], pad: str) -> np.ndarray:
    """Ragged lists → (B, L) object array padded with ``pad`` (L >= 1)."""
    width = max([1, *map(len, lists)])
    out = np.full((len(lists), width), pad, dtype=object)
    for r, items in enumerate(lists):
        if items:
            out[r, : len(items)] = items
    return out


def concat_feeds(feeds: list[Feed]) -> Feed:
    """Row-wise concatenation; 2-D (sequence) inputs are right-padded to the widest first."""
    if len(feeds) == 1:
        return feeds[0]
    out = {}
    for name, first in feeds[0].items():
        parts = [f[name] for f in feeds]
        if first.ndim == 2:
            width = max(p.shape[1] for p in parts)
            parts = [p if p.shape[1] == width else _widen(p, width) for p in parts]
        out[name] = np.concatenate(parts)
    return out


def _widen(x: np.ndarray, width: int) -> np.ndarray:
    pad = np.full((x.shape[0], width - x.shape[1]), "", dtype=object)
    return np.concatenate([x, pad], axis=1)


# ---------------------------------------------------------------------- Arrow columns
def _text_type(t: pa.DataType) -> bool:
    """Strings or integers (an integer is taken as its decimal string), or an all-null column."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)


def _arrow_categorical(spec: InputSpec, col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if pa.types.is_dictionary(t) and _text_type(t.value_type):  # pandas categoricals, Parquet read_dictionary
        return _dictionary_objects(col, spec.missing)
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
    t = col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
        raise TypeError(f"expected strings (or integers), got {t}")
    return _str_objects(pc.fill_null(col.cast(pa.string()), spec.missing))


def _str_objects(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A string column without nulls → (N,) object array of ``str``.

    Each chunk is dictionary-encoded in Arrow and its distinct values become one Python ``str``
    each, shared by the rows that hold them (a numpy take of the codes): a column of N rows and D
    distinct values costs D string objects instead of N, and freeing the feed costs as little.
    The array equals ``to_numpy(zero_copy_only=False)``'s value for value (the batch scorer's and
    the HTTP server's hot path; onnxruntime reads each row's UTF-8 from its object either way)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [_take_words(pc.dictionary_encode(chunk)) for chunk in chunks if len(chunk)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.empty(0, dtype=object)


def _dictionary_objects(col: pa.ChunkedArray | pa.Array, pad: str) -> np.ndarray:
    """A dictionary column of strings (or integers) → (N,) object array, a null value (or null
    dictionary entry) being ``pad``: the dictionary is converted once, the rows are a take."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [_words(c, pad)[_codes(c)] for c in chunks if len(c)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.empty(0, dtype=object)


def _words(chunk: pa.DictionaryArray, pad: str) -> np.ndarray:
    """The chunk's dictionary as ``str`` objects, then ``pad`` (at code ``len(dictionary)``, for null rows)."""
    words = pc.fill_null(chunk.dictionary.cast(pa.string()), pad).to_numpy(zero_copy_only=False).astype(object, copy=False)
    return np.append(words, np.array([pad], dtype=object))


def _codes(chunk: pa.DictionaryArray) -> np.ndarray:
    """The chunk's codes, a null row taking code ``len(dictionary)``."""
    return pc.fill_null(chunk.indices, len(chunk.dictionary)).to_numpy(zero_copy_only=False)


def _take_words(encoded: pa.DictionaryArray) -> np.ndarray:
    """(N,) object array: the dictionary's values taken by code."""
    words = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object, copy=False)
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def _arrow_numeric(spec: InputSpec, col: pa.ChunkedArray) -> np.ndarray:
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)):
        raise TypeError(f"expected numbers, got {t}")
    # safe=False: an integer beyond 2**53 loses precision as it would in any float64 column
    x = pc.fill_null(col.cast(pa.float64(), safe=False), math.nan).to_numpy()
    if np.isinf(x).any():
        raise TypeError("infinite values are not allowed; write null for a missing value")
    return np.ascontiguousarray(x, dtype=np.float64)


def _arrow_sequence(spec: InputSpec, col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    t = col.type
    if spec.separator is not None and (pa.types.is_string(t) or pa.types.is_large_string(t)
                                       or pa.types.is_integer(t) or pa.types.is_null(t)):
        texts = col.cast(pa.string()).to_pylist()
        return pad_lists([[] if x is None else list(spec.head(spec.split(x))) for x in texts], spec.missing)
    items = t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else None
    if items is None or not (_text_type(items) and not pa.types.is_null(items)
                             or pa.types.is_dictionary(items) and _text_type(items.value_type)):
        text = f" or strings delimited by {spec.separator!r}" if spec.separator is not None else ""
        raise TypeError(f"expected a list of strings{text}, got {t}")
    kept = spec.kept  # cut in Arrow, before the dropped items become Python strings
    col = pc.list_slice(col, kept.start, kept.stop)
    if pa.types.is_dictionary(items) and col.num_chunks == 1:  # items read dictionary-encoded (Parquet): kept so
        return _pad_arrow_lists(col, spec.missing)
    return _pad_arrow_lists(col.cast(pa.list_(pa.string())), spec.missing)


def _pad_arrow_lists(col: pa.ChunkedArray, pad: str) -> np.ndarray:
    """An Arrow list<string> column (or, in one chunk, list<dictionary<string>>) → (B, L) object
    array as :func:`pad_lists` builds it (a null list is empty, a null item is ``pad``), scattered
    from the list offsets in one numpy step instead of a Python list per row (the batch scorer's
    hot path)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ChunkedArray):  # a column with no chunks
        arr = pa.array([], type=pa.list_(pa.string()))
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(arr)
    encoded = flat if pa.types.is_dictionary(flat.type) else pc.dictionary_encode(flat)
    # integer codes are scattered (cheap), then one object take builds the (B, L) array; code
    # len(dictionary) stands for the padding and for a null item
    words = _words(encoded, pad)
    width = max(1, int(lengths.max(initial=0)))
    codes = np.full((len(arr), width), len(words) - 1, dtype=np.int64)
    n = int(lengths.sum())
    if n:
        rows = np.repeat(np.arange(len(arr)), lengths)
        starts = np.cumsum(lengths) - lengths
        codes[rows, np.arange(n) - np.repeat(starts, lengths)] = _codes(encoded)
    return words[codes]


#: Arrow timestamp unit → its ticks per second
_TICKS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _arrow_timestamp(spec: InputSpec, col: pa.ChunkedArray) -> np.ndarray:
    """Epoch seconds (float64, NaN = missing) from numbers, timestamps or dates. A timestamp column
    holds UTC instants whatever its time zone says (naive = UTC), so no zone is applied."""
    t = col.type
    if pa.types.is_date(t):
        col, t = col.cast(pa.timestamp("s")), pa.timestamp("s")
    if pa.types.is_timestamp(t):
        ticks = pc.fill_null(col.cast(pa.int64()), 0).to_numpy().astype(np.float64)
        null = col.is_null().to_numpy(zero_copy_only=False)
        return np.where(null, math.nan, ticks / _TICKS[t.unit])
    try:
        return _arrow_numeric(spec, col)
    except TypeError:
        raise TypeError(f"expected epoch seconds (numbers), timestamps or dates, got {t}") from None


def _vector_text(spec: InputSpec, text: str) -> list[float]:
    """One delimited row of numbers → its floats (items split as sequences split, each a finite number)."""
    out = []
    for item in spec.split(text):
        try:
            out.append(float(item))
        except ValueError:
            raise TypeError(f"{clip(repr(item))} is not a number") from None
    if len(out) != spec.size:
        raise TypeError(f"expected {spec.size} numbers, got {len(out)}")
    if not all(math.isfinite(x) for x in out):
        raise TypeError("a vector item is not finite")
    return out


def _arrow_vector(spec: InputSpec, col: pa.ChunkedArray) -> np.ndarray:
    """(B, size) float64 from a (fixed-size / large) list column of numbers or delimited strings; a
    null row is a row of NaN (a missing vector), another length or a null item is refused naming the row."""
    t = col.type
    size: int = spec.size  # type: ignore[assignment]
    if spec.separator is not None and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        rows = []
        for r, text in enumerate(col.to_pylist()):
            try:
                rows.append([math.nan] * size if text is None else _vector_text(spec, text))
            except TypeError as exc:
                raise TypeError(f"row {r}: {exc}") from None
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), size)
    if not ((pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
            and (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type))):
        text = f" or strings delimited by {spec.separator!r}" if spec.separator is not None else ""
        raise TypeError(f"expected a list of {size} numbers{text}, got {t}")
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.fill_null(pc.list_value_length(col), size).to_numpy(zero_copy_only=False)
    if (lengths != size).any():
        r = int(np.argmax(lengths != size))
        raise TypeError(f"row {r}: expected a list of {size} numbers, got {int(lengths[r])}")
    valid = np.flatnonzero(~col.is_null().to_numpy(zero_copy_only=False))
    flat = pc.list_flatten(col.filter(pa.array(~col.is_null().to_numpy(zero_copy_only=False))))
    values = flat.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(valid), size)
    if not np.isfinite(values).all():  # a null item reads as NaN here
        r = int(valid[np.argmax(~np.isfinite(values).all(axis=1))])
        raise TypeError(f"row {r}: a vector item is null or not finite; write null for the whole vector when it is missing")
    x = np.full((len(col), size), math.nan)
    x[valid] = values
    return x
