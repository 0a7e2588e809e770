"""Reading this project's artifacts back as data, never as code; every error names the file.
Writing them atomically (:func:`write_atomic`), so an interrupted write never leaves half a file.

A run or export folder may come from someone else, so nothing in it is trusted:

* checkpoints load with ``torch.load(weights_only=True)``: tensors and plain containers only, a
  pickled object of any other class is refused instead of run;
* JSON files are parsed and then validated against a pydantic schema, so a tampered or truncated
  file fails here, naming the file and field, not later in some unrelated traceback.
"""

from __future__ import annotations

import json
import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

import torch
from pydantic import BaseModel, ValidationError

from recsys_mtl.errors import DataError, RecsysMTLError, format_validation_error

M = TypeVar("M", bound=BaseModel)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename: a killed process
    leaves the previous file (and at worst a stray ``.tmp``), a failed write (disk full, file-size
    limit) removes the temporary file and raises :class:`DataError` naming ``path``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: DDP ranks may write the same file
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror or exc}); the previous file, if any, is kept") from exc


def check_new_folder(out: Path, option: str = "--out", error: type[RecsysMTLError] = DataError) -> None:
    """Refuse, before any work is done, an output folder that could not be written at the end.

    ``out`` must be a new or empty folder, and the nearest existing folder above it writable: a
    path under a regular file, a file named as the folder, or a read-only parent otherwise fails
    only after the whole export or evaluation has run. Raises ``error`` naming ``out`` and the
    path at fault; ``option`` is the flag the user changes.
    """
    if out.exists() and not out.is_dir():
        raise error(f"{out}: is a file; the output is a new folder, choose another {option}")
    if out.is_dir() and any(out.iterdir()):
        raise error(f"{out}: already exists and is not empty; choose another {option}")
    existing = next(p for p in (out, *out.parents) if p.exists())  # the root always exists
    if not existing.is_dir():
        raise error(f"{out}: cannot be created: {existing} is a file, not a folder; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise error(f"{out}: cannot be created: {existing} is not writable; choose another {option}")


@contextmanager
def writing(target: Path, what: str) -> Iterator[None]:
    """Turn an OSError raised while writing ``what`` into a :class:`DataError` naming ``target``
    (a bare ``[Errno 27] File too large`` names nothing). Put it outside the staging context so
    the staged files are already removed when the error is raised."""
    try:
        yield
    except OSError as exc:
        raise DataError(f"{target}: cannot write {what} ({exc.strerror or exc}); nothing was written there") from exc


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict with a ``state_dict`` of tensors (loaded on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the weights-only unpickler says what it refused: a global (a class or function to call)
        # means objects beyond tensors and plain data; anything else means bytes it cannot parse
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "Unsupported" in line), lines[0] if lines else "")
        if "Unsupported global" in detail:
            raise DataError(
                f"{path}: refused to load: the checkpoint holds objects other than tensors and plain data "
                f"(checkpoints are loaded as data, never as code): {detail[:200]}"
            ) from None
        raise DataError(f"{path}: not a readable checkpoint ({detail[:200]})") from None
    except Exception as exc:  # truncated zip, garbage bytes, wrong format: many exception types
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise DataError(f"{path}: not a training checkpoint (no 'state_dict' mapping)")
    bad = [k for k, v in ckpt["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(f"{path}: state_dict entry {str(bad[0])[:100]!r} is not a tensor")
    return ckpt


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch a checkpoint was saved at."""
    epoch = load_checkpoint(path).get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise DataError(f"{path}: checkpoint has no integer 'epoch'")
    return epoch


def read_json(path: str | Path, schema: type[M]) -> M:
    """Parse a JSON file and validate it against ``schema``; errors name the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (offset {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} (line {exc.lineno}, column {exc.colno}): not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # integers past the digit limit, deep nesting
        raise DataError(f"{path}: not valid JSON: {_first_line(exc)}") from None
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, source=path, raw=raw, model=schema, limit=3)) from None
