"""CPU seconds per ONNX export of an untrained model, in one process, modes alternating export by export:

- ``public``: the public ``torch.onnx.export`` (rebuilds the ONNX op registry on every call), autograd on;
- ``reused``: :func:`recsys_mtl.export.dynamo_export.export_program` (registry built once per
  process), autograd on: what ``export_model`` did before it traced under ``no_grad``;
- ``no_grad``: :func:`recsys_mtl.export.model_graph.export_model` as it is (registry reused, trace
  under ``torch.no_grad()``).

    OMP_NUM_THREADS=1 python benchmarks/export_cost.py --model mmoe --model home --repeats 4 --out export_cost.json

CPU = user + system seconds of this process (``resource.RUSAGE_SELF``), which the load of other
processes barely changes; wall is printed too, with the load. The first export of the process
(imports, torch.export warm-up, the registry build) is reported apart ("cold") and left out of the
medians. The modes' graphs are compared byte for byte. ``--calls`` also counts the Python function
calls of one export per mode (cProfile), a measure the load of other processes does not change.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import onnx
import pstats
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import dynamo_export
from recsys_mtl.export.model_graph import OPSET, ScoringHead, export_model
from recsys_mtl.export.preprocess_graph import encoded_names
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
#: model → params (small, as in the export tests; home as in tests/export/test_task_subset.py)
MODELS: dict[str, dict[str, Any]] = {
    "mmoe": {"num_experts": 4},
    "ple": {"expert_hidden": [16], "num_levels": 2, "task_experts": 2, "shared_experts": 2},
    "home": {"groups": {"a": ["task0"], "b": ["task1"]}, "expert_hidden": [16], "feature_gate_rank": 2},
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def public_path() -> Iterator[None]:
    """Exports inside take the public torch.onnx.export, as on a torch without the internals."""
    real = dynamo_export._private_api
    dynamo_export._private_api = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        dynamo_export._private_api = real  # type: ignore[assignment]


def head_and_example(model: str) -> tuple[ScoringHead, list[torch.Tensor]]:
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml")
    train = generate(SyntheticConfig(rows=1200, num_tasks=len(spec.tasks), seed=2))
    pre = Preprocessor.fit(spec, train)
    torch.manual_seed(0)
    net = build_model(model, MODELS[model], model_context(pre.layout, spec.tasks, None))
    names = encoded_names(pre)
    cols = pre.transform(train).columns()
    return ScoringHead(net, spec.tasks, names), [cols[n][:2] for n in names]


def with_grad(head: ScoringHead, example: list[torch.Tensor]) -> onnx.ModelProto:
    """export_model's export before it traced under no_grad: export_program with autograd on."""
    with torch.enable_grad():
        return dynamo_export.export_program(head, tuple(example), input_names=head.input_names,
                                            output_names=[t.name for t in head.tasks],
                                            dynamic_shapes=(tuple({0: torch.export.Dim("batch", min=1)} for _ in example),),
                                            opset=OPSET)


def public(head: ScoringHead, example: list[torch.Tensor]) -> onnx.ModelProto:
    with public_path():
        return with_grad(head, example)


#: mode -> one export
MODES: dict[str, Callable[[ScoringHead, list[torch.Tensor]], onnx.ModelProto]] = {
    "public": public,
    "reused": with_grad,
    "no_grad": export_model,
}


def timed(mode: str, head: ScoringHead, example: list[torch.Tensor]) -> tuple[float, float, onnx.ModelProto]:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    graph = MODES[mode](head, example)
    return cpu_seconds() - cpu0, time.perf_counter() - t0, graph


def python_calls(mode: str, head: ScoringHead, example: list[torch.Tensor]) -> int:
    prof = cProfile.Profile()
    prof.enable()
    MODES[mode](head, example)
    prof.disable()
    return pstats.Stats(prof).total_calls  # type: ignore[attr-defined]


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="default: mmoe")
    ap.add_argument("--repeats", type=int, default=4, help="exports per mode and model (after the cold one)")
    ap.add_argument("--calls", action="store_true", help="also count the Python calls of one export per mode")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows: list[dict[str, Any]] = []
    for i, model in enumerate(args.model or ["mmoe"]):
        head, example = head_and_example(model)
        cold_cpu, cold_wall, _ = timed("no_grad", head, example)  # the process's first export: builds the registry
        samples: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
        graphs: dict[str, bytes] = {}
        for _ in range(args.repeats):
            for mode in MODES:
                c, w, g = timed(mode, head, example)
                samples[mode].append((c, w))
                graphs[mode] = g.SerializeToString()
        for mode, runs in samples.items():
            row = {"model": model, "mode": mode, "exports": len(runs),
                   "cpu_s": round(statistics.median(c for c, _ in runs), 3),
                   "wall_s": round(statistics.median(w for _, w in runs), 3),
                   "python_calls": python_calls(mode, head, example) if args.calls else None,
                   "cold_cpu_s": round(cold_cpu, 3) if (mode == "no_grad" and i == 0) else None,
                   "nodes": len(onnx.load_from_string(graphs[mode]).graph.node),
                   "identical_graphs": len(set(graphs.values())) == 1, "load": os.getloadavg()[0]}
            rows.append(row)
            cold = f"  first export of the process {row['cold_cpu_s']:.2f} s" if row["cold_cpu_s"] is not None else ""
            calls = f"  calls {row['python_calls']}" if args.calls else ""
            print(f"{model:<6} {mode:<7} cpu {row['cpu_s']:5.2f} s/export  wall {row['wall_s']:5.2f} s  "
                  f"nodes {row['nodes']}  identical {row['identical_graphs']}{calls}  (load {row['load']:.2f}){cold}")
    if args.out:
        args.out.write_text(json.dumps({
            "commit": commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__,
            "results": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
