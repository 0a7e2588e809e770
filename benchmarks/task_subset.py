"""Task-sparse export: size and scoring speed of a task-subset graph next to the full graph.

    python benchmarks/task_subset.py --model home --tasks task0 --rounds 5

Fits a short run (synthetic data, 8 binary tasks; HoME gets two groups of four), exports the full
graph and the ``--tasks`` subset (``recsys-mtl export RUN --tasks ...``), checks that the subset's
outputs equal the full graph's, and times ONNX Runtime on raw rows (preprocessing inside, one
intra-op thread), the two graphs taking turns so the shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml

from recsys_mtl.export import export_run
from recsys_mtl.export.preprocess_graph import raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.export.task_subset import graph_stats
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.fit import fit
from recsys_mtl.train.run_folder import load_run

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "home": {"groups": {"g0": [f"task{i}" for i in range(4)], "g1": [f"task{i}" for i in range(4, 8)]},
             "expert_hidden": [64], "tower_hidden": [32]},
    "ple": {"expert_hidden": [64], "tower_hidden": [32]},
    "mmoe": {"num_experts": 8, "expert_hidden": [64], "tower_hidden": [32]},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="home", choices=sorted(PARAMS))
    p.add_argument("--tasks", default="task0")
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="task_subset_"))
    spec = yaml.safe_load((ROOT / "feature_specs" / "synthetic.yaml").read_text())
    spec["tasks"] = [{"name": f"task{k}", "label": f"label{k}", "type": "binary"} for k in range(8)]
    spec["ignore"] = [f"y{k}" for k in range(8)]
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    cfg, fspec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
        f"spec={tmp / 'spec.yaml'}", f"data.rows={args.rows}", "data.num_tasks=8", f"data.cache_dir={tmp}",
        f"model.name={args.model}", "trainer.max_epochs=1", "trainer.progress_bar=false", f"runs_dir={tmp / 'runs'}",
    ])
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": PARAMS[args.model]})})
    run = fit(cfg, fspec).run_dir
    tasks = args.tasks.split(",")
    full = export_run(run, tmp / "full")
    sub = export_run(run, tmp / "sub", tasks=tasks)

    from recsys_mtl.data.sources import load_splits

    test = load_splits(cfg.data).test.head(args.batch)
    feed = raw_feed(raw_inputs(load_run(run).preprocessor), test)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sessions = {k: ort.InferenceSession(str(r.out_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])
                for k, r in (("full", full), ("subset", sub))}
    outs = {k: dict(zip([o.name for o in s.get_outputs()], s.run(None, feed))) for k, s in sessions.items()}
    diff = max(float(np.abs(outs["full"][t] - outs["subset"][t]).max()) for t in tasks)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for k, s in sessions.items():
            start = time.perf_counter()
            for _ in range(5):
                s.run(None, feed)
            times[k].append((time.perf_counter() - start) / 5)
    print(f"model {args.model}, 8 tasks, subset {tasks}; max abs diff subset vs full {diff:.2g}")
    print("| graph | nodes | initializers | parameters | file MB | ms / batch of %d raw rows | rows/s |" % args.batch)
    print("|---|---|---|---|---|---|---|")
    for k, r in (("full", full), ("subset", sub)):
        st = graph_stats(onnx.load(r.out_dir / "model.onnx"))
        ms = statistics.median(times[k]) * 1e3
        print(f"| {k} | {st['nodes']} | {st['initializers']} | {st['parameters']} | {st['bytes'] / 1e6:.2f} | {ms:.2f} | {args.batch / ms * 1e3:,.0f} |")


if __name__ == "__main__":
    main()
