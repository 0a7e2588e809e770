"""Errors the CLI turns into one clear line (no traceback unless ``--debug``), and the one place
pydantic validation errors become such lines."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


class RecsysMTLError(Exception):
    """Base of every user-facing error: the message names the file, column or field at fault."""


class SpecError(RecsysMTLError):
    """A feature spec or pipeline file is malformed or inconsistent."""


class DataError(RecsysMTLError):
    """A data file is missing, empty, or does not match the spec."""


class LeakageError(SpecError):
    """A label, or a column derived from it, is listed as a feature."""


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_validation_error(
    exc: ValidationError,
    *,
    source: object | None = None,
    prefix: str = "",
    raw: Any = None,
    model: type[BaseModel] | None = None,
    unknown: str = "unknown key",
    sep: str = "\n",
    limit: int = 10,
) -> str:
    """``[source: ]location: message`` per pydantic error, joined by ``sep``.

    * location: ``prefix`` then the path in ``raw`` (the validated input) as ``a.b[0].c``; a list
      item with a ``name`` reads ``[0] (name)``; pydantic's union tags, which are not keys of the
      input, are left out.
    * message: pydantic's text without its ``Value error,`` prefix; a key the schema does not
      declare reads ``unknown`` plus a "did you mean" hint from the keys ``model`` declares there.
    * at most ``limit`` entries, then ``(and N more)``.
    """
    errors = exc.errors()
    lines = []
    for err in errors[:limit]:
        loc = tuple(err["loc"])
        where = _join(prefix, _location(raw, loc, missing=err["type"] == "missing"))
        if err["type"] == "extra_forbidden":
            msg = unknown + (did_you_mean(str(loc[-1]), _known_keys(model, loc[:-1])) if model is not None and loc else "")
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {where}: {msg}" if source is not None else f"{where}: {msg}")
    if len(errors) > limit:
        lines.append(f"(and {len(errors) - limit} more)")
    return sep.join(lines)


def _join(prefix: str, where: str) -> str:
    if not prefix:
        return where or "<top>"
    return prefix + ("" if not where or where.startswith("[") else ".") + where


def _location(raw: Any, loc: tuple[Any, ...], missing: bool = False) -> str:
    """``loc`` as the user wrote it: ``a.b[0] (name).c``, without pydantic's union tags (the last
    key of a ``missing`` error is the absent field, never a tag)."""
    out, node = "", raw
    for i, key in enumerate(loc):
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            out += f"[{key}]" + (f" ({name})" if isinstance(name, str) else "")
            node = item
        elif isinstance(node, dict) and key not in node and not (missing and i == len(loc) - 1) and _is_tag(node, key):
            continue
        else:
            out += ("." if out else "") + str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return out


def _is_tag(node: dict[Any, Any], key: str) -> bool:
    """Whether ``key`` is a union tag pydantic put in the location: the value of the input's
    discriminator (``kind: numeric`` → ``numeric``) or a validator's name."""
    return key.startswith("function-") or any(isinstance(v, str) and v == key for v in node.values())


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model(s) found at ``loc`` when walking ``model``'s annotations."""
    found: list[Any] = [model]
    for key in loc:
        step: list[Any] = []
        for t in _members(found):
            if isinstance(t, type) and issubclass(t, BaseModel):
                if isinstance(key, str) and key in t.model_fields:
                    step.append(t.model_fields[key].annotation)
                elif isinstance(key, str) and (key.startswith("function-") or _has_literal(t, key)):
                    step.append(t)  # a union tag that chose this member
            elif isinstance(get_origin(t), type) and issubclass(get_origin(t), Mapping):  # type: ignore[arg-type]
                step.extend(get_args(t)[1:2])
            elif isinstance(key, int) and isinstance(get_origin(t), type) and issubclass(get_origin(t), Sequence):  # type: ignore[arg-type]
                step.extend(get_args(t)[:1])
        found = step
    return sorted({f for t in _members(found) if isinstance(t, type) and issubclass(t, BaseModel) for f in t.model_fields})


def _members(annotations: list[Any]) -> list[Any]:
    """Annotations with ``Annotated`` unwrapped and unions split into their members."""
    out: list[Any] = []
    for t in annotations:
        origin = get_origin(t)
        if origin is Annotated:
            out += _members([get_args(t)[0]])
        elif origin is Union or origin is types.UnionType:
            out += _members(list(get_args(t)))
        else:
            out.append(t)
    return out


def _has_literal(model: type[BaseModel], value: str) -> bool:
    return any(get_origin(f.annotation) is Literal and value in get_args(f.annotation) for f in model.model_fields.values())
