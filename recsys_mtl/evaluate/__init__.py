"""Offline evaluation of an export on new labelled rows: metrics, calibration, slices, input drift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys_mtl.evaluate.report import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]


def __getattr__(name: str) -> Any:
    """``Evaluation`` and ``evaluate`` on first use: the report brings torch and torchmetrics, which
    ``recsys_mtl.evaluate.split`` (``recsys-mtl split``) does not need."""
    if name in __all__:
        from recsys_mtl.evaluate import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
