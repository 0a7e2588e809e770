"""Expert diagnostics for MoE models: activation sparsity, gate entropy, per-task expert usage."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys_mtl.diagnostics.callback import ExpertDiagnostics
    from recsys_mtl.diagnostics.plot import plot_diagnostics
    from recsys_mtl.diagnostics.stats import DiagnosticsAccumulator, has_experts

__all__ = ["DiagnosticsAccumulator", "ExpertDiagnostics", "has_experts", "plot_diagnostics"]

#: where each public name lives: imported on first use, so that ``recsys-mtl report`` (plots and
#: stats) does not pay for Lightning, which only the training callback needs
_HOMES = {"ExpertDiagnostics": "callback", "plot_diagnostics": "plot",
          "DiagnosticsAccumulator": "stats", "has_experts": "stats"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
