"""Read YAML a user hands us, within limits; every error names the file (and line where known).

Limits, checked before any Python object is built:

* size: at most :data:`MAX_BYTES` bytes (a spec of a thousand features is about 50 KB);
* text: UTF-8 (a leading byte-order mark is allowed);
* nesting: at most :data:`MAX_DEPTH` levels of mappings / lists;
* alias expansion: the document, with every ``*alias`` counted as a copy of its anchor's
  content, has at most :data:`MAX_NODES` nodes (an "alias bomb" of nested aliases is a few
  lines long and expands to gigabytes once a consumer copies it); an alias to a collection that
  contains it (a recursive structure) is refused;
* a mapping key given twice is refused (YAML would silently keep the last value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode

from recsys_mtl.errors import SpecError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000

# libyaml's parser when available, else PyYAML's own (several times slower)
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a mapping key given twice (merge keys ``<<`` may be overridden)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}  # key → its first key node
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if first is not key_node:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, first.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _where(source: str | Path, line: int | None) -> str:
    return f"{source} (line {line})" if line is not None else str(source)


def _check_events(text: str, source: str | Path) -> None:
    """Depth and expanded node count from the event stream (no recursion, no objects built)."""
    counts: list[int] = [0]  # expanded nodes of each open collection (the bottom one: documents)
    anchors: list[str | None] = []  # anchor of each open collection
    sizes: dict[str, int] = {}  # anchor → expanded nodes of its (closed) content
    for event in yaml.parse(text, Loader=_Base):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, CollectionStartEvent):
            if len(anchors) >= MAX_DEPTH:
                raise SpecError(f"{_where(source, line)}: nested deeper than {MAX_DEPTH} levels")
            counts.append(1)
            anchors.append(event.anchor)
        elif isinstance(event, CollectionEndEvent):
            n = counts.pop()
            anchor = anchors.pop()
            if anchor is not None:
                sizes[anchor] = n
            counts[-1] += n
        elif isinstance(event, ScalarEvent):
            counts[-1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            if event.anchor not in sizes:
                raise SpecError(
                    f"{_where(source, line)}: alias *{event.anchor} refers to an undefined anchor "
                    "or to a collection that contains it (recursive structures are not allowed)"
                )
            counts[-1] += sizes[event.anchor]
        if isinstance(event, (NodeEvent, CollectionEndEvent)) and sum(counts) > MAX_NODES:
            raise SpecError(
                f"{_where(source, line)}: expands to more than {MAX_NODES:,} values once aliases are "
                "followed (alias bomb?)"
            )


def load_yaml_text(text: str, source: str | Path) -> Any:
    """Parse YAML text within the limits above; ``source`` names it in errors."""
    try:
        _check_events(text, source)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader subclass
    except _DuplicateKey as exc:
        raise SpecError(
            f"{_where(source, exc.line)}: key {exc.key!r} given twice (first on line {exc.first_line})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = _where(source, mark.line + 1) if mark else str(source)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: malformed YAML: {what}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer past Python's digit limit
        raise SpecError(f"{source}: cannot read YAML: {str(exc).splitlines()[0][:200]}") from None


def read_yaml_file(path: str | Path) -> Any:
    """Read a YAML file within the limits above (any top-level value)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    with path.open("rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise SpecError(f"{path}: larger than the {MAX_BYTES // (1024 * 1024)} MiB limit for YAML files")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return load_yaml_text(text, path)
