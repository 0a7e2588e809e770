"""Train-step throughput of the expert models, measured interleaved in one process.

    python benchmarks/expert_step_time.py --models shared_bottom mmoe ple home adatt --rounds 5
    python benchmarks/expert_step_time.py --census --models mmoe multitab   # census-income batches

Each model's ``model`` section comes from ``pipelines/census_<model>.yaml`` (or the reference
entries of census_models.py), applied to synthetic data (2 tasks) so no data download is needed,
or with ``--census`` to batches of the census-income train split (the census pipelines' spec).
Models take turns, one timed block each per round, so a shared machine's load hits them alike;
the median over rounds is printed as rows/s of forward + backward + Adam step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from census_models import model_source
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import load_pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["shared_bottom", "mmoe", "ple", "home", "adatt"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--census", action="store_true", help="census-income batches instead of synthetic ones")
    args = p.parse_args()

    if args.census:
        cfg, spec = load_pipeline(model_source("mmoe")[0])
        fit_on = load_splits(cfg.data).train  # full vocabularies: the parameter counts of a real fit
    else:
        cfg, spec = load_pipeline(model_source("mmoe")[0].parent / "synthetic_mmoe.yaml")
        fit_on = generate(SyntheticConfig(rows=args.batch_size * 4, num_tasks=2, seed=0))
    pre = Preprocessor.fit(spec, fit_on)
    cols = pre.transform(fit_on.head(args.batch_size * 4)).columns()
    ctx = ModelContext(layout=pre.layout, tasks=spec.tasks)
    models = {}
    for name in args.models:
        pipeline, overrides = model_source(name)
        mcfg, _ = load_pipeline(pipeline, overrides)
        model = build_model(mcfg.model.name, mcfg.model.params, ctx)
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    batches = [{k: v[i * args.batch_size : (i + 1) * args.batch_size] for k, v in cols.items()} for i in range(4)]

    def block(name: str) -> float:
        model, opt = models[name]
        t0 = time.perf_counter()
        for s in range(args.steps):
            b = batches[s % 4]
            out = model(features_only(b))
            loss = sum(F.binary_cross_entropy_with_logits(out[t.name], b["labels"][:, i]) for i, t in enumerate(spec.tasks))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return args.steps * args.batch_size / (time.perf_counter() - t0)

    for name in models:
        block(name)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            rates[name].append(block(name))
    print("| model | params | train-step rows/s (median) |\n|---|---|---|")
    for name, (model, _) in models.items():
        print(f"| {name} | {sum(p.numel() for p in model.parameters()):,} | {statistics.median(rates[name]):,.0f} |")


if __name__ == "__main__":
    main()
