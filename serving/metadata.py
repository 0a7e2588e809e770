"""An export's ``metadata.json``: checked on load (every error names the file), and its public view.

The server trusts nothing in an export folder it is pointed at: a truncated or edited
``metadata.json`` or a file entry pointing outside the folder is one clear :class:`ExportLoadError`
naming the file, never a traceback at start-up or a crash on the first request.
"""

from __future__ import annotations

import json
import ntpath
import posixpath
from pathlib import Path
from typing import Any

from serving.contract import ContractError, conditions_from_json, inputs_from_json
from serving.limits import limits_from_json

#: metadata.json is a few kilobytes; anything far larger is not one
MAX_METADATA_BYTES = 16 * 1024 * 1024


class ExportLoadError(ValueError):
    """The export folder cannot be served; the message starts with the file at fault."""


def load_metadata(export_dir: Path) -> dict[str, Any]:
    """``export_dir/metadata.json``, parsed and checked."""
    path = export_dir / "metadata.json"
    if not path.is_file():
        raise ExportLoadError(f"{path}: not an export folder (metadata.json missing)")
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise ExportLoadError(f"{path}: larger than {MAX_METADATA_BYTES} bytes, not an export's metadata")
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ExportLoadError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ExportLoadError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})") from None
    except (RecursionError, ValueError) as exc:
        raise ExportLoadError(f"{path}: not valid JSON ({str(exc)[:120] or type(exc).__name__})") from None
    except OSError as exc:
        raise ExportLoadError(f"{path}: cannot be read ({exc.strerror})") from None
    problem = _problem(meta, export_dir)
    if problem:
        raise ExportLoadError(f"{path}: {problem}")
    return meta


def _problem(meta: Any, export_dir: Path) -> str | None:
    """What is wrong with ``meta`` (first problem found), None when it can be served."""
    if not isinstance(meta, dict):
        return "expected a JSON object"
    inputs, outputs, files = meta.get("inputs"), meta.get("outputs"), meta.get("files")
    try:
        inputs_from_json(inputs)
        conditions_from_json(meta.get("conditions"))
    except ContractError as exc:
        return str(exc)
    try:
        limits_from_json(meta.get("limits"))
    except ValueError as exc:
        return str(exc)
    if not isinstance(outputs, list) or not outputs:
        return "'outputs' must be a non-empty list"
    if not all(isinstance(o, dict) and isinstance(o.get("name"), str) and o["name"] for o in outputs):
        return "'outputs': every entry needs a non-empty 'name'"
    if len({o["name"] for o in outputs}) != len(outputs):
        return "'outputs': a name appears twice"
    if not isinstance(files, dict) or not files:
        return "'files' must be a non-empty object (variant -> file name)"
    for variant, name in files.items():
        # a plain file name inside the export folder: an entry may not point elsewhere
        if not isinstance(name, str) or not name or name != posixpath.basename(name) or name != ntpath.basename(name) \
                or name in (".", ".."):
            return f"files[{variant!r}]: expected a file name inside the export folder, got {str(name)[:80]!r}"
        if not (export_dir / name).is_file():
            return f"files[{variant!r}]: {name} is missing from the export folder"
    return None


def public_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as shown over HTTP: every absolute path replaced by its last component (the
    server's directory layout is nobody's business)."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str) and (posixpath.isabs(value) or ntpath.isabs(value)):
            return ntpath.basename(value.rstrip("/\\")) or "<path>"
        return value

    return scrub(meta)
