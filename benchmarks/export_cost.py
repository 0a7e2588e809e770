"""CPU seconds per ONNX export of an untrained model: the public ``torch.onnx.export`` (rebuilds the
ONNX op registry on every call) against :mod:`recsys_mtl.export.dynamo_export` (registry built once
per process), in one process, modes alternating export by export.

    OMP_NUM_THREADS=1 python benchmarks/export_cost.py --model mmoe --model home --repeats 4 --out export_cost.json

CPU = user + system seconds of this process (``resource.RUSAGE_SELF``), which the load of other
processes barely changes; wall is printed too, with the load. The first export of the process
(imports, torch.export warm-up, and in the reused mode the registry build) is reported apart
("cold") and left out of the medians. Both modes' graphs are compared byte for byte.
"""

from __future__ import annotations

import argparse
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
from typing import Any, Iterator

import onnx
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import dynamo_export
from recsys_mtl.export.model_graph import ScoringHead, export_model
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


def timed(head: ScoringHead, example: list[torch.Tensor]) -> tuple[float, float, onnx.ModelProto]:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    graph = export_model(head, example)
    return cpu_seconds() - cpu0, time.perf_counter() - t0, graph


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="default: mmoe")
    ap.add_argument("--repeats", type=int, default=4, help="exports per mode and model (after the cold one)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows: list[dict[str, Any]] = []
    for i, model in enumerate(args.model or ["mmoe"]):
        head, example = head_and_example(model)
        cold_cpu, cold_wall, _ = timed(head, example)  # the reused mode's first export: builds the registry
        samples: dict[str, list[tuple[float, float]]] = {"public": [], "reused": []}
        graphs: dict[str, bytes] = {}
        for _ in range(args.repeats):
            with public_path():
                c, w, g = timed(head, example)
            samples["public"].append((c, w))
            graphs["public"] = g.SerializeToString()
            c, w, g = timed(head, example)
            samples["reused"].append((c, w))
            graphs["reused"] = g.SerializeToString()
        for mode, runs in samples.items():
            row = {"model": model, "mode": mode, "exports": len(runs),
                   "cpu_s": round(statistics.median(c for c, _ in runs), 3),
                   "wall_s": round(statistics.median(w for _, w in runs), 3),
                   "cold_cpu_s": round(cold_cpu, 3) if (mode == "reused" and i == 0) else None,
                   "nodes": len(onnx.load_from_string(graphs[mode]).graph.node),
                   "identical_graphs": graphs["public"] == graphs["reused"], "load": os.getloadavg()[0]}
            rows.append(row)
            cold = f"  first export of the process {row['cold_cpu_s']:.2f} s" if row["cold_cpu_s"] is not None else ""
            print(f"{model:<6} {mode:<7} cpu {row['cpu_s']:5.2f} s/export  wall {row['wall_s']:5.2f} s  "
                  f"nodes {row['nodes']}  identical {row['identical_graphs']}  (load {row['load']:.2f}){cold}")
    if args.out:
        args.out.write_text(json.dumps({
            "commit": commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__,
            "results": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
