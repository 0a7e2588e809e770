"""Old code put back for an A/B inside one process: attributes set for a block, restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any


@contextlib.contextmanager
def applied(patches: Iterable[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set each ``(owner, attribute, value)`` for the block; every old value is restored on exit."""
    chosen = list(patches)
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in chosen]
    for owner, name, value in chosen:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
