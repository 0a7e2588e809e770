"""The input contract of an exported model: one :class:`InputSpec` per raw input column.

The exporter (``recsys_mtl.export``) writes ``metadata.json``'s ``inputs`` with :func:`inputs_to_json`
and the server (:mod:`serving.schema`) reads them back with :func:`inputs_from_json`; one class and
one (de)serialisation, so the two sides cannot drift apart. Reading checks every entry and names
the entry and the field at fault (the caller adds the file).

Where it lives: inside ``serving`` (the lowest layer), pure Python with no import beyond the
standard library, so imports run one way: ``recsys_mtl`` imports this module, nothing in
``serving`` imports ``recsys_mtl`` or torch.

Per kind (dtype and missing value follow from the kind; ``metadata.json`` states them for readers):

* ``categorical``: ``string`` (B,), missing = ``""``;
* ``numeric``: ``float64`` (B,), missing = ``NaN``;
* ``sequence``: ``string`` (B, L), missing / padding = ``""``; a list keeps its first ``max_len``
  items (:attr:`InputSpec.kept`, the one place that rule is defined). With a ``separator`` the
  server also takes a delimited string per row and splits it by :func:`split_items`;
* ``timestamp``: ``float64`` (B,), seconds since 1970-01-01 UTC (an instant: no time zone), missing =
  ``NaN``; the server also takes Arrow ``timestamp`` (any unit; naive = UTC, an aware one is already an
  instant) and ``date`` columns and converts them to epoch seconds;
* ``vector``: ``float64`` (B, :attr:`InputSpec.size`), a fixed-length vector per row (e.g. a pretrained
  embedding), missing = a row of ``NaN``; another length is refused naming the row. With a
  ``separator`` the server also takes one delimited string of numbers per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

T = TypeVar("T")

#: how a missing categorical / sequence value is written in a string input tensor
NULL_TOKEN = ""
KINDS = ("categorical", "numeric", "sequence", "timestamp", "vector")
#: kind → dtype of its input tensor
DTYPES = {"categorical": "string", "numeric": "float64", "sequence": "string", "timestamp": "float64", "vector": "float64"}
#: input kinds with a separator (a row may be one delimited string)
SPLIT_KINDS = ("sequence", "vector")
#: dtype → how a missing value is written (as metadata.json states it)
MISSING = {"string": NULL_TOKEN, "float64": "NaN"}
#: stripped from both ends of each item of a delimited sequence string (ASCII whitespace only, so
#: Python's ``str.strip`` and polars' ``strip_chars`` agree on it)
ITEM_WHITESPACE = " \t\n\r\f\v"


def split_items(text: str, separator: str) -> list[str]:
    """A delimited sequence string → its items: split on ``separator`` (a literal string), each
    item stripped of surrounding :data:`ITEM_WHITESPACE`, empty items dropped, so ``""`` is the
    empty sequence and ``" a| |b|"`` is ``["a", "b"]``. The rule of every path: training applies
    it as a polars expression (``recsys_mtl.features.sequences``), the server with this function."""
    return [item for item in (part.strip(ITEM_WHITESPACE) for part in text.split(separator)) if item]


class ContractError(ValueError):
    """An ``inputs`` entry that does not describe a servable input; the message names the entry and field."""


@dataclass(frozen=True)
class InputSpec:
    """One raw input column of an exported model.

    ``name``: the column (and graph input) name; ``feature``: the spec feature reading it;
    ``max_len``: sequences only, the number of items kept per row; ``separator``: sequences and vectors,
    set when a row may also be one delimited string (split by :meth:`split`); ``size``: vectors only,
    the length of every row's vector.
    """

    name: str
    feature: str
    kind: str
    max_len: int | None = None
    separator: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        problem = _problem(self.name, self.kind, self.max_len, self.separator, self.size)
        if problem:
            raise ContractError(f"input {self.name!r}: {problem}")

    @property
    def dtype(self) -> str:
        return DTYPES[self.kind]

    @property
    def missing(self) -> str:
        return MISSING[self.dtype]

    @property
    def shape(self) -> list[str | int]:
        """Graph input shape: (B,), (B, L) for a sequence (any L: the graph fixes the width), (B, size) for a vector."""
        if self.kind == "vector":
            return ["batch", self.size]  # type: ignore[list-item]
        return ["batch", f"{self.name}.len"] if self.kind == "sequence" else ["batch"]

    @property
    def kept(self) -> slice:
        """The items of a sequence row that the model sees: the first ``max_len``, as in training (the
        one definition of that rule; the server applies it to JSON lists and to Arrow list columns)."""
        return slice(0, self.max_len)

    def head(self, items: Sequence[T]) -> Sequence[T]:
        """``items`` (one sequence row) cut to :attr:`kept`."""
        return items[self.kept]

    def split(self, text: str) -> list[str]:
        """One delimited sequence row → its items (:func:`split_items` with this input's separator)."""
        assert self.separator is not None
        return split_items(text, self.separator)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "feature": self.feature, "kind": self.kind, "dtype": self.dtype,
                               "shape": self.shape, "missing": self.missing}
        if self.max_len is not None:
            out["max_len"] = self.max_len
        if self.separator is not None:
            out["separator"] = self.separator
        if self.size is not None:
            out["size"] = self.size
        return out

    @classmethod
    def from_json(cls, entry: Any, where: str = "input") -> InputSpec:
        """One ``inputs`` entry, checked; ``where`` names it in errors (e.g. ``inputs[3]``)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ContractError(f"{where}: expected an object with a non-empty 'name'")
        name, kind, max_len, separator = entry["name"], entry.get("kind"), entry.get("max_len"), entry.get("separator")
        size = entry.get("size")
        where = f"{where} ({name[:80]!r})"
        problem = _problem(name, kind, max_len, separator, size)
        if problem:
            raise ContractError(f"{where}: {problem}")
        spec = cls(name, entry.get("feature", name), kind, max_len, separator, size)  # type: ignore[arg-type]
        if not isinstance(spec.feature, str) or not spec.feature:
            raise ContractError(f"{where}: 'feature' must be a non-empty string")
        # written by the exporter for readers; stated otherwise than the kind implies = an edited file
        for field, expected in (("dtype", spec.dtype), ("missing", spec.missing), ("shape", spec.shape)):
            if field in entry and entry[field] != expected:
                raise ContractError(f"{where}: {field!r} must be {expected!r} for a {kind} input, got {str(entry[field])[:40]!r}")
        return spec


@dataclass(frozen=True)
class ConditionSpec:
    """An extra float input of the graph that is not a raw column (e.g. a task preference), (B, K)
    float32; the server fills ``default`` (K values) when a request does not set it.
    ``metadata.json`` lists these under ``conditions``, apart from ``inputs``."""

    name: str
    default: tuple[float, ...]

    kind = "condition"
    dtype = "float32"

    @property
    def shape(self) -> list[str | int]:
        return ["batch", len(self.default)]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dtype": self.dtype, "shape": self.shape, "default": list(self.default)}


def _problem(name: str, kind: Any, max_len: Any, separator: Any = None, size: Any = None) -> str | None:
    if kind not in KINDS:
        return f"'kind' must be one of {list(KINDS)}, got {str(kind)[:40]!r}"
    # a sequence's max_len also bounds the width of the padded feed a request can cause
    if kind == "sequence" and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1):
        return "'max_len' must be a positive integer"
    if kind != "sequence" and max_len is not None:
        return f"'max_len' applies to sequence inputs only, not to a {kind} input"
    if separator is not None and (kind not in SPLIT_KINDS or not isinstance(separator, str) or not separator):
        return "'separator' must be a non-empty string, on a sequence input only (or a vector input)"
    # a vector's size fixes the width of the feed (and of the graph input)
    if kind == "vector" and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        return "'size' must be a positive integer"
    if kind != "vector" and size is not None:
        return f"'size' applies to vector inputs only, not to a {kind} input"
    return None


def inputs_to_json(inputs: Sequence[InputSpec]) -> list[dict[str, Any]]:
    """``metadata.json``'s ``inputs`` list."""
    return [i.to_json() for i in inputs]


def inputs_from_json(entries: Any) -> list[InputSpec]:
    """``metadata.json``'s ``inputs`` list, checked: non-empty, every entry valid, names unique."""
    if not isinstance(entries, list) or not entries:
        raise ContractError("'inputs' must be a non-empty list")
    out: list[InputSpec] = []
    names: set[str] = set()
    for k, entry in enumerate(entries):
        spec = InputSpec.from_json(entry, f"inputs[{k}]")
        if spec.name in names:
            raise ContractError(f"inputs[{k}]: name {spec.name!r} appears twice")
        names.add(spec.name)
        out.append(spec)
    return out


def conditions_from_json(entries: Any) -> list[ConditionSpec]:
    """``metadata.json``'s optional ``conditions`` list, checked: a name and a finite numeric default each."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ContractError("'conditions' must be a list")
    out = []
    for k, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        default = entry.get("default") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ContractError(f"conditions[{k}]: needs a non-empty 'name'")
        if (not isinstance(default, list) or not default
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < float("inf") for v in default)):
            raise ContractError(f"conditions[{k}] ({name!r}): 'default' must be a non-empty list of finite numbers")
        out.append(ConditionSpec(name, tuple(float(v) for v in default)))
    return out
