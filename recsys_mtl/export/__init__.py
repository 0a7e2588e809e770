"""ONNX export of a run folder: the model with its fitted preprocessing inside the graph.

``recsys-mtl export <run_dir>`` → see :func:`recsys_mtl.export.exporter.export_run`.
"""

from recsys_mtl.export.exporter import ExportResult, export_run, load_run
from recsys_mtl.export.preprocess_graph import NULL_TOKEN, ExportError

__all__ = ["NULL_TOKEN", "ExportError", "ExportResult", "export_run", "load_run"]
