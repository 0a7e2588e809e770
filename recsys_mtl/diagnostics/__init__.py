"""Expert diagnostics for MoE models: activation sparsity, gate entropy, per-task expert usage."""

from recsys_mtl.diagnostics.callback import ExpertDiagnostics
from recsys_mtl.diagnostics.plot import plot_diagnostics
from recsys_mtl.diagnostics.stats import DiagnosticsAccumulator, has_experts

__all__ = ["DiagnosticsAccumulator", "ExpertDiagnostics", "has_experts", "plot_diagnostics"]
