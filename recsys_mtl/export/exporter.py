"""Export a run folder (see :mod:`recsys_mtl.train.fit`) to a self-contained ONNX model.

Output folder::

    exports/<name>/
      model.onnx          raw columns in → per-task outputs (preprocessing inside the graph)
      model.int8.onnx     optional: dynamic int8 quantization of the model part
      model.fp16.onnx     optional: model part computed in float16 (same float32 interface)
      metadata.json       spec hash, inputs / outputs, tasks, versions, parity, variant metrics
      spec.yaml           the run's feature spec: labels, masks, groups (for ``recsys-mtl evaluate``)
      preprocessing.json  the run's fitted preprocessing: vocabularies, quantiles (input drift)
      triton/<name>/      Triton Inference Server repository (config.pbtxt + 1/model.onnx)

The export is checked before anything is written: on held-out rows (the run's test split) the
ONNX Runtime output on the feed the server builds from the raw columns (its own Arrow input path)
must equal torch on the Python preprocessing to ``tolerance``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from recsys_mtl.artifacts import check_new_folder, writing
from recsys_mtl.data.preprocess import Preprocessor, spec_hash
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.features.value_limits import fitted_range
from recsys_mtl.export.model_graph import OPSET, OUTPUT_ACTIVATIONS, ScoringHead, export_model
from recsys_mtl.export.preprocess_graph import (
    ExportError,
    build_preprocess_graph,
    encoded_names,
    raw_inputs,
)
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.export.task_subset import check_tasks, graph_stats, subset_model
from recsys_mtl.export.triton import write_repository
from recsys_mtl.spec.features import Task
from recsys_mtl.train.calibration import load_calibration
from recsys_mtl.train.run_folder import load_run
from serving.contract import ConditionSpec, inputs_to_json
from serving.limits import limits_to_json

FORMAT = "recsys_mtl.export/1"
TOLERANCE = 1e-5


@dataclass
class ExportResult:
    out_dir: Path
    metadata: dict[str, Any]


# ---------------------------------------------------------------------- graphs
def attach_preprocessing(core: onnx.ModelProto, pre: Preprocessor) -> onnx.ModelProto:
    """Prepend the preprocessing graph: the result takes raw columns and keeps the core's outputs."""
    core = onnx.compose.add_prefix(core, "m::", rename_inputs=False, rename_outputs=False)
    opset = next(o.version for o in core.opset_import if o.domain == "")
    prep = build_preprocess_graph(pre, opset)
    prep.ir_version = core.ir_version
    names = encoded_names(pre)
    merged = onnx.compose.merge_models(prep, core, io_map=[(n, n) for n in names], name="recsys_mtl")
    return merged


def _head_inputs(pre: Preprocessor, table: EncodedTable, conditions: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Encoded columns, then each condition input's default repeated over the rows."""
    cols = table.columns()
    rows = len(table)
    return [cols[n] for n in encoded_names(pre)] + [v.float().expand(rows, -1).contiguous() for v in (conditions or {}).values()]


def condition_feed(conditions: dict[str, torch.Tensor], rows: int) -> dict[str, np.ndarray]:
    """ONNX Runtime feed of the condition inputs at their defaults: name → (rows, K) float32."""
    return {k: np.tile(v.float().numpy(), (rows, 1)) for k, v in conditions.items()}


def _session(model: onnx.ModelProto | str, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _torch_outputs(head: ScoringHead, inputs: list[torch.Tensor], batch: int = 8192) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in head.tasks]
    with torch.no_grad():
        for start in range(0, inputs[0].shape[0], batch):
            outs = head(*[x[start:start + batch] for x in inputs])
            for i, o in enumerate(outs):
                parts[i].append(o.numpy())
    return [np.concatenate(p) for p in parts]


def _ort_outputs(session: ort.InferenceSession, feed: dict[str, np.ndarray], batch: int = 8192) -> list[np.ndarray]:
    rows = next(iter(feed.values())).shape[0]
    chunks = [session.run(None, {k: v[s:s + batch] for k, v in feed.items()}) for s in range(0, rows, batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def parity(head: ScoringHead, session: ort.InferenceSession, pre: Preprocessor, rows: pl.DataFrame,
           conditions: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Max abs difference per task: torch on the Python preprocessing vs ONNX Runtime on the feed the
    server builds from the raw columns (:func:`~recsys_mtl.export.raw.raw_feed`), condition inputs
    (if any) at their defaults."""
    ref = _torch_outputs(head, _head_inputs(pre, pre.transform(rows, "parity rows"), conditions))
    got = _ort_outputs(session, {**raw_feed(raw_inputs(pre), rows, "held-out parity rows"),
                                 **condition_feed(conditions or {}, rows.height)})
    return {t.name: float(np.abs(r - g).max()) for t, r, g in zip(head.tasks, ref, got)}


# ---------------------------------------------------------------------- variant metrics
def _auc(p: np.ndarray, y: np.ndarray) -> float:
    # imported here: torchmetrics brings scipy and matplotlib (~1.3 s), which only variant metrics need
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(torch.from_numpy(p.astype(np.float32)), torch.from_numpy(y).long()))


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(-1) == y).mean())


def _rmse(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(((p - y) ** 2).mean()))


#: task type → (metric name, metric on (outputs, labels) of the labelled rows)
VARIANT_METRIC: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "binary": ("auc", _auc),
    "multiclass": ("accuracy", _accuracy),
    "regression": ("rmse", _rmse),
}


def task_metrics(tasks: list[Task], outputs: list[np.ndarray], table: EncodedTable,
                 columns: list[int] | None = None) -> dict[str, dict[str, float]]:
    """``columns``: each task's label column in ``table`` (default: position in ``tasks``)."""
    labels, weights = table.labels.numpy(), table.weights.numpy()
    out: dict[str, dict[str, float]] = {}
    for i, task, pred in zip(columns or range(len(tasks)), tasks, outputs):
        keep = weights[:, i] > 0
        name, fn = VARIANT_METRIC[task.type]
        y = labels[keep, i]
        out[task.name] = {name: round(fn(pred[keep], y.astype(np.int64) if task.type != "regression" else y), 6)}
    return out


def _int8(head: ScoringHead, core: onnx.ModelProto, example: list[torch.Tensor], work: Path) -> onnx.ModelProto:
    src, dst = work / "core.fp32.onnx", work / "core.int8.onnx"
    onnx.save(core, src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    return onnx.load(dst)


def _fp16(head: ScoringHead, core: onnx.ModelProto, example: list[torch.Tensor], work: Path) -> onnx.ModelProto:
    half = ScoringHead(copy.deepcopy(head.model), head.tasks, head.input_names, compute_dtype=torch.float16,
                       calibration={t: {"a": a, "b": b} for t, (a, b) in head.calibration.items()})
    return export_model(half, example)


#: variant name → core-model transformation (the fp32 scoring head, its graph, example inputs, a work dir)
VARIANTS: dict[str, Callable[[ScoringHead, onnx.ModelProto, list[torch.Tensor], Path], onnx.ModelProto]] = {
    "int8": _int8,
    "fp16": _fp16,
}


# ---------------------------------------------------------------------- main entry
def _versions() -> dict[str, str]:
    out = {"opset": str(OPSET)}
    for pkg in ("recsys-mtl", "torch", "onnx", "onnxruntime"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def output_info(tasks: list[Task]) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "task_type": t.type,
            "meaning": OUTPUT_ACTIVATIONS[t.type][0],
            "dtype": "float32",
            "shape": ["batch", t.num_classes] if t.type == "multiclass" else ["batch"],
        }
        for t in tasks
    ]


def export_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    variants: tuple[str, ...] = (),
    parity_rows: int = 2048,
    tolerance: float = TOLERANCE,
    test: pl.DataFrame | None = None,
    tasks: Sequence[str] | None = None,
) -> ExportResult:
    """Export ``run_dir``; raises :class:`ExportError` when parity exceeds ``tolerance``.

    ``test`` overrides the held-out rows (default: the run's test split, read through its data
    source, which reads no training rows when the test split is stored apart from train).
    ``tasks`` exports a task-sparse graph scoring only those tasks (see
    :mod:`recsys_mtl.export.task_subset`); metadata then compares its size with the full graph's.
    """
    run = load_run(run_dir)
    all_tasks = list(run.spec.tasks)
    subset = check_tasks([t.name for t in all_tasks], tasks) if tasks is not None else None
    out_dir = Path(out) if out is not None else Path("exports") / run.run_dir.name
    check_new_folder(out_dir, error=ExportError)  # before the export's minutes, not after them
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ExportError(f"unknown export variants {sorted(unknown)} (choose from {sorted(VARIANTS)})")
    clash = {t.name for t in run.spec.tasks} & {r.name for r in raw_inputs(run.preprocessor)}
    if clash:
        raise ExportError(f"task names {sorted(clash)} are also input column names; rename the tasks")

    if getattr(run.model, "batch_dependent", False):
        raise ExportError(f"{run.run_dir}: model {run.cfg.model.name!r} attends across the rows of a batch "
                          "(inter-sample attention), so a served score would depend on the other requests "
                          "batched with it; train it with row-wise attention (att_type: row) to export")
    if test is None:
        source = data_source(run.cfg.data)
        sample, test = source.held_out_sample(parity_rows), source.test()
    else:
        sample = test.head(parity_rows)
    pre = run.preprocessor
    selected = [t for t in all_tasks if subset is None or t.name in subset]
    columns = [all_tasks.index(t) for t in selected]
    conditions = run.model.condition_inputs()
    names = encoded_names(pre) + list(conditions)
    model = subset_model(run.model, subset) if subset is not None else run.model
    # fitted on the validation split at fit time; only the exported tasks' maps
    calibration = {t: p for t, p in load_calibration(run.run_dir).items() if subset is None or t in subset}
    head = ScoringHead(model, selected, names, calibration=calibration)
    table = pre.transform(test, "test split")
    example = [x[:2] for x in _head_inputs(pre, table, conditions)]  # >= 2 rows: size-1 dims get specialised

    core = export_model(head, example)
    sparse_info: dict[str, Any] = {}
    if subset is not None:
        full_core = export_model(ScoringHead(run.model, all_tasks, names), example)
        sparse_info = {"task_subset": {"tasks": subset, "all_tasks": [t.name for t in all_tasks],
                                       "full": graph_stats(full_core), "subset": graph_stats(core)}}
    tasks = selected
    full = attach_preprocessing(core, pre)
    session = _session(full)
    diffs = parity(head, session, pre, sample, conditions)
    worst = max(diffs.values())
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(f"{run.run_dir}: ONNX and torch disagree on held-out rows: max abs difference "
                          f"{worst:.3g} > {tolerance:g} (per task {diffs})")

    feed = {**raw_feed(raw_inputs(pre), test, "test split"), **condition_feed(conditions, test.height)}
    base = task_metrics(tasks, _ort_outputs(session, feed), table, columns)
    files = {"fp32": "model.onnx"}
    variant_info: dict[str, Any] = {}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # staged next to the destination, then renamed: a failed export never leaves a partial folder
    with writing(out_dir, "the export"), tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        stage = work / "out"
        stage.mkdir()
        onnx.save(full, stage / "model.onnx")
        for name in variants:
            model = attach_preprocessing(VARIANTS[name](head, core, example, work), pre)
            onnx.save(model, stage / f"model.{name}.onnx")
            metrics = task_metrics(tasks, _ort_outputs(_session(model), feed), table, columns)
            files[name] = f"model.{name}.onnx"
            variant_info[name] = {
                "file": files[name],
                "test_metrics": metrics,
                "change": {t: {m: round(v - base[t][m], 6) for m, v in ms.items()} for t, ms in metrics.items()},
            }
        inputs = raw_inputs(pre)
        cond_inputs = [ConditionSpec(k, tuple(v.float().reshape(-1).tolist())) for k, v in conditions.items()]
        outputs = output_info(tasks)
        meta: dict[str, Any] = {
            "format": FORMAT,
            "name": out_dir.name,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_dir": str(run.run_dir.resolve()),
            "model": run.cfg.model.name,
            "spec_name": run.spec.name,
            "spec_hash": spec_hash(run.spec),
            "inputs": inputs_to_json(inputs),
            # raw values whose transform the model's float32 can hold (serving.limits); the server refuses others
            "limits": limits_to_json({f.source: fitted_range(pre.numeric[f.name]) for f in run.spec.numeric}),
            "outputs": outputs,
            "tasks": [t.name for t in tasks],
            "files": files,
            "calibration": {"method": run.cfg.calibration, "params": calibration} if calibration else None,
            "parity": {"rows": sample.height, "max_abs_diff": worst, "per_task": diffs,
                       "tolerance": tolerance},
            "test_metrics": {"rows": test.height, "fp32": base},
            "variants": variant_info,
            **sparse_info,
            # extra float inputs besides the raw columns (e.g. a task preference), with defaults
            **({"conditions": [c.to_json() for c in cond_inputs]} if cond_inputs else {}),
            "versions": _versions(),
        }
        (stage / "metadata.json").write_text(json.dumps(meta, indent=1))
        for name in ("spec.yaml", "preprocessing.json"):  # what `evaluate` reads labels and training statistics from
            shutil.copyfile(run.run_dir / name, stage / name)
        write_repository(stage / "triton", out_dir.name, stage / "model.onnx", inputs + cond_inputs, outputs)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(stage, out_dir)
    return ExportResult(out_dir, meta)
