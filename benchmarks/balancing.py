"""Task-balancing benchmark: every strategy against equal weighting, mean ± std over seeds.

    python benchmarks/balancing.py census --epochs 4 --seeds 1 2 3 --out /tmp/bal_census.jsonl
    python benchmarks/balancing.py synthetic --correlation -0.5 --seeds 1 2 3 --out /tmp/bal_syn.jsonl
    python benchmarks/balancing.py report /tmp/bal_census.jsonl    # re-print a table
    python benchmarks/balancing.py report /tmp/bal_syn.jsonl --baselines RUNS/<name>-baselines-*/baselines.json
    python benchmarks/balancing.py steps --steps 40                 # CPU time per training step

``census``: pipelines/census_noleak_mmoe.yaml (MMoE, income + never-married, without the three columns that
leak marital status; ``--pipeline`` picks another) with each method.
``synthetic``: pipelines/synthetic_mmoe.yaml with conflicting tasks (negative task correlation).
Each fit runs in its own process so its peak RSS is its own; results are appended to ``--out`` as
they finish (a partial run still yields a table). Prints a markdown table: test AUC per task,
train seconds per epoch relative to equal weighting (training batches only, no validation), and
peak RSS. Run folders go to a temporary folder, never the repo.

``steps`` measures the *process CPU time* of one training step (forward, strategy, backward,
Adam step) per method on batches of ``--batch-size`` rows (1024) of ``--pipeline`` (the leak-free census by default;
``--set`` overrides its fields), one thread: robust to a shared machine, where wall-clock epoch times are not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["equal", "uncertainty", "dwa", "gradnorm", "famo", "coba", "pcgrad", "cagrad", "mgda", "aligned_mtl", "gcond",
           "samo", "rep_mtl", "nash_mtl", "imtl", "db_mtl", "fairgrad"]
#: per-method parameters for short benchmark runs (``--short``): CoBa's warm-up and history are
#: scaled from the reference's 100 / 200 steps to runs of a few hundred steps
SHORT_PARAMS = {"coba": "{warmup_steps: 20, history: 40}"}


def one_fit(pipeline: str, overrides: list[str]) -> dict[str, Any]:
    """Runs inside the child process: one fit, its metrics as a dict."""
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.fit import fit

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore")
    cfg, spec = load_pipeline(ROOT / "pipelines" / pipeline, overrides)
    return metrics_record(fit(cfg, spec).metrics)


def metrics_record(m: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's fields of one fit's metrics.json content."""
    epochs = m["train_rows"] / m["split_sizes"]["train"]
    return {
        "test": {k: v for k, v in m["test"].items() if k.endswith("/auc")},
        "train_seconds_per_epoch": m["train_step_seconds"] / epochs,
        "peak_rss_mib": m["peak_rss_mib"],
        "best_epoch": m["best_epoch"],
    }


def fits_in_process(pipeline: str, base: list[str], jobs: list[tuple[int, list[str]]]) -> Any:
    """Yields (job index, record) for each (seed, overrides) job, fitted one after the other in
    this process on splits encoded once: the data preparation and imports are paid once instead of
    once per fit (the same splits and seeds, so the same metrics as a child process; peak RSS is
    then the process's, so it is not recorded)."""
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.fit import fit, prepare

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore")
    cfg, spec = load_pipeline(ROOT / "pipelines" / pipeline, base)
    prep = prepare(cfg, spec)
    for i, (_, overrides) in enumerate(jobs):
        cfg_i, spec_i = load_pipeline(ROOT / "pipelines" / pipeline, overrides)
        try:
            record = metrics_record(fit(cfg_i, spec_i, prepared=prep).metrics)
        except Exception as exc:  # one failing method must not lose the others' rows
            yield i, {"error": repr(exc)[-500:]}
            continue
        record["peak_rss_mib"] = None
        yield i, record


def run(args: argparse.Namespace) -> None:
    runs_dir = tempfile.mkdtemp(prefix="recsys_balancing_")
    if args.kind == "census":
        pipeline, base = args.pipeline, [f"trainer.max_epochs={args.epochs}"]
    else:
        pipeline = "synthetic_mmoe.yaml"
        base = [f"data.task_correlation={args.correlation}", f"data.rows={args.rows}", f"trainer.max_epochs={args.epochs}",
                f"data.cache_dir={runs_dir}/cache"]
    out = Path(args.out)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def overrides_of(seed: int, method: str) -> list[str]:
        overrides = [*base, f"balancing.name={method}", f"trainer.seed={seed}", "trainer.progress_bar=false",
                     f"runs_dir={runs_dir}", *args.set]
        if args.short and method in SHORT_PARAMS:
            overrides.append(f"balancing.params={SHORT_PARAMS[method]}")
        return overrides

    def append(record: dict[str, Any]) -> None:
        with out.open("a") as f:  # one short append per run: safe across the worker threads
            f.write(json.dumps(record) + "\n")

    # seed-major order: an interrupted run still compares every method
    jobs = [(seed, method) for seed in args.seeds for method in args.methods]
    if args.in_process:
        base_overrides = [*base, f"runs_dir={runs_dir}", *args.set]
        for i, result in fits_in_process(pipeline, base_overrides, [(s, overrides_of(s, m)) for s, m in jobs]):
            seed, method = jobs[i]
            append({"method": method, "seed": seed, **result})
            print(f"{method} seed {seed}: {result.get('test', result.get('error'))}", file=sys.stderr, flush=True)
        print(table(out))
        return

    def one(seed: int, method: str) -> None:
        overrides = overrides_of(seed, method)
        child = subprocess.run(
            [sys.executable, __file__, "_one", pipeline, json.dumps(overrides)], capture_output=True, text=True, env=env
        )
        if child.returncode != 0:
            print(f"{method} seed {seed} FAILED:\n{child.stderr[-3000:]}", file=sys.stderr)
            record: dict[str, Any] = {"method": method, "seed": seed, "error": child.stderr[-500:]}
        else:
            record = {"method": method, "seed": seed, **json.loads(child.stdout.strip().splitlines()[-1])}
            print(f"{method} seed {seed}: {record['test']} {record['train_seconds_per_epoch']:.2f}s/epoch", file=sys.stderr)
        append(record)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: one(*job), jobs))
    print(table(out))


def step_costs(args: argparse.Namespace) -> None:
    import time

    import torch

    from recsys_mtl.balancing import build_balancer
    from recsys_mtl.balancing.base import StepContext
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.datamodule import TableDataModule
    from recsys_mtl.train.fit import build_module, prepare

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    cfg, spec = load_pipeline(ROOT / "pipelines" / args.pipeline, args.set)
    prep = prepare(cfg, spec)
    dm = TableDataModule(prep.train, prep.valid, prep.test, args.batch_size, 8192, 0)
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == args.steps + 5:
            break
    base = None
    print("| method | CPU ms / step | vs equal |\n|---|---|---|")
    for method in args.methods:
        module = build_module(prep)
        module.balancer = build_balancer(method, {}, module.model.task_names)
        module.train()
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        spent = 0.0
        for i, batch in enumerate(batches):
            t0 = time.process_time()
            opt.zero_grad()
            losses = module.task_losses(module(batch), batch)
            ctx = StepContext(step=i, epoch=0, model=module.model, shared=module.shared.pop(), shared_params=module.shared.params,
                              evaluate=lambda b=batch: module._reevaluate(b))
            module.balancer(losses, ctx).backward()
            opt.step()
            post_step(module, batch, i)
            if i >= 5:  # warm-up steps excluded
                spent += time.process_time() - t0
        ms = 1000 * spent / args.steps
        base = base or ms
        print(f"| {method} | {ms:.1f} | {ms / base:.2f}× |", flush=True)


def post_step(module: Any, batch: Any, step: int) -> None:
    """The extra forward a strategy asks for after the optimizer step (FAMO: this batch again;
    CoBa: a validation batch, here the training batch of the same size, which costs the same)."""
    import torch

    balancer = module.balancer
    if balancer.post_step is None:
        return
    with torch.no_grad():
        losses = module.task_losses(module(batch), batch).detach().float()
    if balancer.post_step == "validation_batch" and not balancer.has_reference():
        balancer.set_reference(losses)
    balancer.after_step(losses, step)


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


#: sides of a ``recsys-mtl baseline`` baselines.json shown beside the balancers, and their labels
BASELINE_SIDES = {"single_task": "single-task MMoE (one per task)", "lightgbm": "LightGBM per task"}


def baseline_runs(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Per-seed test AUCs of the single-task and LightGBM sides of ``recsys-mtl baseline`` folders'
    baselines.json files, as records of the benchmark's own shape (no time or RSS)."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        results = json.loads(path.read_text())["results"]
        for side, label in BASELINE_SIDES.items():
            for seed, split in results.get(side, {}).items():
                test = {k: v for k, v in split["test"].items() if k.endswith("/auc")}
                runs[label].append({"seed": int(seed), "test": test, "train_seconds_per_epoch": None, "peak_rss_mib": None})
    return runs


def table(path: Path, baselines: list[Path] = ()) -> str:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if "error" in r:
            failed[r["method"]] += 1
        else:
            runs[r["method"]].append(r)
    extra = baseline_runs(list(baselines))
    runs.update(extra)
    tasks = sorted({k.removesuffix("/auc") for rs in runs.values() for k in rs[0]["test"] if "/" in k})
    base = statistics.mean(r["train_seconds_per_epoch"] for r in runs["equal"]) if runs.get("equal") else None
    names = [m for m in METHODS if m in runs or m in failed] + list(extra)
    lines = [
        "| method | seeds | " + " | ".join(f"{t} test AUC" for t in tasks)
        + " | mean AUC | Δ mean AUC vs equal, same seed | per-seed Δ | train time / epoch vs equal | peak RSS MiB |",
        "|" + "---|" * (len(tasks) + 7),
    ]
    for method in names:
        rs = runs.get(method, [])
        if not rs:
            lines.append(f"| {method} | 0 (failed {failed[method]}) |" + " |" * (len(tasks) + 5))
            continue
        aucs = [fmt([r["test"][f"{t}/auc"] for r in rs]) for t in tasks]
        mean_auc = fmt([statistics.mean(r["test"][f"{t}/auc"] for t in tasks) for r in rs])
        mean_of = lambda r: statistics.mean(r["test"][f"{t}/auc"] for t in tasks)  # noqa: E731
        equal_by_seed = {r["seed"]: mean_of(r) for r in runs.get("equal", [])}
        paired = sorted((r["seed"], mean_of(r) - equal_by_seed[r["seed"]]) for r in rs if r["seed"] in equal_by_seed)
        diffs = [d for _, d in paired]
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        delta = f"{statistics.mean(diffs):+.4f} ± {sd:.4f}" if diffs and method != "equal" else "–"
        per_seed = ", ".join(f"{d:+.4f}" for d in diffs) if diffs and method != "equal" else "–"  # seed order
        secs = [r["train_seconds_per_epoch"] for r in rs if r["train_seconds_per_epoch"] is not None]
        sec = statistics.mean(secs) if secs else None
        rel = "–" if sec is None else f"{sec / base:.2f}×" if base else f"{sec:.1f}s"
        rss_values = [r["peak_rss_mib"] for r in rs if r["peak_rss_mib"] is not None]  # None: fitted in process
        rss = f"{max(rss_values):,.0f}" if rss_values else "–"
        lines.append(f"| {method} | {len(rs)} | " + " | ".join(aucs) + f" | {mean_auc} | {delta} | {per_seed} | {rel} | {rss} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(one_fit(sys.argv[2], json.loads(sys.argv[3]))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    for kind, epochs in (("census", 4), ("synthetic", 8)):
        s = sub.add_parser(kind)
        s.add_argument("--methods", nargs="+", default=METHODS)
        s.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
        s.add_argument("--epochs", type=int, default=epochs)
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra pipeline override")
        s.add_argument("--out", required=True, help="JSON-lines file results are appended to")
        s.add_argument("--jobs", type=int, default=1, help="fits run in parallel (timings then share the CPU)")
        s.add_argument("--threads", type=int, default=1, help="torch threads per fit")
        s.add_argument("--short", action="store_true", help="scale step-count parameters (SHORT_PARAMS) to short runs")
        s.add_argument("--in-process", action="store_true",
                       help="fit one after the other in this process on splits encoded once (no per-fit peak RSS)")
        if kind == "census":
            s.add_argument("--pipeline", default="census_noleak_mmoe.yaml", help="pipeline file under pipelines/")
        if kind == "synthetic":
            s.add_argument("--correlation", type=float, default=-0.5)
            s.add_argument("--rows", type=int, default=30000)
    st = sub.add_parser("steps")
    st.add_argument("--methods", nargs="+", default=METHODS)
    st.add_argument("--steps", type=int, default=40)
    st.add_argument("--pipeline", default="census_noleak_mmoe.yaml", help="pipeline file under pipelines/")
    st.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline override (e.g. the synthetic data)")
    st.add_argument("--batch-size", type=int, default=1024, help="rows per training step")
    r = sub.add_parser("report")
    r.add_argument("path")
    r.add_argument("--baselines", nargs="*", type=Path, default=[],
                   help="baselines.json files of `recsys-mtl baseline` runs: single-task and LightGBM rows, same seeds")
    args = p.parse_args()
    if args.kind == "report":
        print(table(Path(args.path), args.baselines))
    elif args.kind == "steps":
        step_costs(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
