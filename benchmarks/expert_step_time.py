"""Train-step throughput of the expert models, measured interleaved in one process.

    python benchmarks/expert_step_time.py --models shared_bottom mmoe ple home adatt --rounds 5
    python benchmarks/expert_step_time.py --census --models mmoe multitab   # census-income batches

Each model's ``model`` section comes from ``pipelines/census_<model>.yaml`` (or the reference
entries of census_models.py), applied to synthetic data (2 tasks) so no data download is needed,
or with ``--census`` to batches of the census-income train split, each model encoding the same
rows with its own pipeline's spec (e.g. ``mmoe``'s 8-dim embeddings, ``multitab``'s 4-dim ones).
Models take turns, one timed block each per round, so a shared machine's load hits them alike;
the median over rounds is printed as rows/s of forward + backward + Adam step, as ms per step,
and as a multiple of the first model's step time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from census_models import model_source
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import FeatureSpec, load_pipeline


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
    encoded: dict[Path | None, tuple[Preprocessor, list[dict]]] = {}  # spec path → fitted preprocessing, batches

    def encode(model_spec_path: Path | None, model_spec: FeatureSpec) -> tuple[Preprocessor, list[dict]]:
        if model_spec_path not in encoded:
            pre = Preprocessor.fit(model_spec, fit_on)
            cols = pre.transform(fit_on.head(args.batch_size * 4)).columns()
            encoded[model_spec_path] = (pre, [
                {k: v[i * args.batch_size : (i + 1) * args.batch_size] for k, v in cols.items()} for i in range(4)
            ])
        return encoded[model_spec_path]

    models = {}
    for name in args.models:
        pipeline, overrides = model_source(name)
        mcfg, mspec = load_pipeline(pipeline, overrides)
        # synthetic data has one spec; on census every model reads the same rows through its own spec
        pre, batches = encode(mcfg.spec, mspec) if args.census else encode(None, spec)
        model = build_model(mcfg.model.name, mcfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), batches)

    def block(name: str) -> float:
        model, opt, batches = models[name]
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
    first = args.models[0]
    print(f"| model | params | train-step rows/s (median) | ms/step | × {first} step |\n|---|---|---|---|---|")
    for name, (model, _, _) in models.items():
        rate = statistics.median(rates[name])
        ratio = statistics.median(rates[first]) / rate
        print(
            f"| {name} | {sum(p.numel() for p in model.parameters()):,} | {rate:,.0f} "
            f"| {1000 * args.batch_size / rate:,.1f} | {ratio:.1f} |"
        )


if __name__ == "__main__":
    main()
