"""Score raw columns with an exported ONNX model (onnxruntime + numpy only; never torch)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from serving.metadata import ExportLoadError, load_metadata
from serving.schema import Feed, Schema

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def choose_providers(requested: str = "auto") -> list[str]:
    """``auto``: CUDA when onnxruntime offers it, else CPU; ``cpu`` / ``cuda`` force one."""
    available = ort.get_available_providers()
    wanted = {"auto": [CUDA, CPU] if CUDA in available else [CPU], "cpu": [CPU], "cuda": [CUDA, CPU]}
    if requested not in wanted:
        raise ValueError(f"provider must be one of {sorted(wanted)}, got {requested!r}")
    if requested == "cuda" and CUDA not in available:
        raise ValueError(f"provider 'cuda' requested but onnxruntime offers only {available}")
    return wanted[requested]


class Predictor:
    """An exported model folder (``metadata.json`` + ONNX files) ready to score.

    ``variant`` picks ``fp32`` (default), ``int8`` or ``fp16`` from the metadata's files;
    ``intra_threads`` 0 lets onnxruntime use every core; ``allow_spinning=False`` makes idle
    onnxruntime threads sleep instead of busy-waiting (better when the cores are shared).
    """

    def __init__(self, export_dir: str | Path, variant: str = "fp32", provider: str = "auto",
                 intra_threads: int = 0, inter_threads: int = 1, warmup: bool = True, allow_spinning: bool = True):
        self.export_dir = Path(export_dir)
        self.metadata: dict[str, Any] = load_metadata(self.export_dir)
        files = self.metadata["files"]
        if variant not in files:
            raise ValueError(f"variant {variant!r} not in this export (has {sorted(files)})")
        self.variant = variant
        self.schema = Schema(self.metadata)
        self.tasks: list[str] = [o["name"] for o in self.metadata["outputs"]]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = inter_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.model_path = self.export_dir / files[variant]
        providers = choose_providers(provider)
        try:
            self.session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...): one line naming the file
            raise ExportLoadError(f"{self.model_path}: not a loadable ONNX model ({_first_line(exc)})") from None
        try:  # extra float inputs of the graph (e.g. a task preference) and their defaults
            self.conditions = {str(c["name"]): np.asarray(c["default"], np.float32).reshape(-1)
                               for c in self.metadata.get("conditions", [])}
        except (TypeError, KeyError, ValueError):
            raise ExportLoadError(f"{self.export_dir / 'metadata.json'}: 'conditions' needs entries with a name and a numeric default") from None
        self._check_signature()
        self.providers = self.session.get_providers()
        self.ready = False
        if warmup:
            self.warmup()

    def _check_signature(self) -> None:
        """The graph's inputs and outputs are the ones metadata.json describes."""
        graph_in = {i.name for i in self.session.get_inputs()}
        graph_out = {o.name for o in self.session.get_outputs()}
        if graph_in != set(self.schema.names) | set(self.conditions) or not set(self.tasks) <= graph_out:
            raise ExportLoadError(
                f"{self.model_path}: its inputs / outputs do not match metadata.json "
                f"(graph inputs {sorted(graph_in)[:8]}, outputs {sorted(graph_out)[:8]}; "
                f"metadata inputs {sorted(self.schema.names)[:8]}, outputs {self.tasks[:8]})")

    def predict(self, feed: Feed) -> dict[str, np.ndarray]:
        """Feed of raw columns (see :class:`Schema`) → {task: (B,) or (B, C) float32}.

        Condition inputs of the export (e.g. ``preference``, (B, T) float32) not in ``feed`` get
        their metadata default.
        """
        missing = [name for name in self.conditions if name not in feed]
        if missing:
            rows = len(next(iter(feed.values())))
            feed = {**feed, **{name: np.tile(self.conditions[name], (rows, 1)) for name in missing}}
        return dict(zip(self.tasks, self.session.run(self.tasks, feed)))

    def predict_rows(self, rows: Sequence[dict[str, Any]] | dict[str, Any], max_rows: int = 1 << 20) -> dict[str, np.ndarray]:
        """JSON-style rows (validated like HTTP requests) → outputs."""
        feed, _ = self.schema.from_json(rows, max_rows)
        return self.predict(feed)

    def predict_table(self, table: Any, max_rows: int = 1 << 24) -> dict[str, np.ndarray]:
        """A pyarrow Table, or anything with ``to_arrow()`` (a polars DataFrame), of raw columns → outputs.

        Columns are checked and converted as the HTTP server's Arrow path does them; extra
        columns (ids, labels) are ignored.
        """
        import pyarrow as pa

        if not isinstance(table, pa.Table):
            table = table.to_arrow()
        feed, _ = self.schema.from_arrow(table.select([c for c in table.column_names if c in self.schema.names]), max_rows)
        return self.predict(feed)

    def warmup(self, sizes: Sequence[int] = (1, 64, 1024)) -> float:
        """Run a few all-missing batches so the first request pays no allocation cost; returns seconds."""
        started = time.perf_counter()
        try:
            for n in sizes:
                self.predict(self.schema.blank(n))
        except Exception as exc:  # e.g. an input kind in metadata.json that the graph does not take
            raise ExportLoadError(f"{self.model_path}: scoring all-missing rows failed; metadata.json and the "
                                  f"model disagree? ({_first_line(exc)})") from None
        self.ready = True
        took = time.perf_counter() - started
        log.info("warm-up on %s took %.3f s", self.providers[0], took)
        return took


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:300] if text else "") or type(exc).__name__
