"""MultiTab-Net's training step against the plain MMoE's, in one process, in CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 python transformer_step_ab.py --rounds 5

Models on the same census batches, taking turns (as in expert_step_time.py): the plain MMoE
reference (``mmoe_plain``), MultiTab-Net as its census pipeline sets it (2 blocks of 2 heads),
the previous default of 3 blocks, and 1 head. Each step (forward, losses, backward, Adam) is
timed in process CPU seconds (one thread), so the machine's load, which stretches wall time,
distorts the ratios less; within one process all models see the same load. Prints ms per step
(median and minimum over all timed steps) and the multiple of the MMoE step.
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
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec import load_pipeline

VARIANTS = (  # label, model source, overrides
    ("mmoe_plain", "mmoe_plain", []),
    ("multitab", "multitab", []),
    ("multitab_3blocks", "multitab", ["model.params.n_blocks=3"]),
    ("multitab_1head", "multitab", ["model.params.n_heads=1"]),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="MultiTab steps per turn (MMoE takes 5× as many)")
    args = p.parse_args()
    torch.set_num_threads(1)

    cfg, _ = load_pipeline(model_source("multitab")[0])
    train = load_splits(cfg.data).train
    models = {}
    for label, source, extra in VARIANTS:
        pipeline, overrides = model_source(source)
        mcfg, spec = load_pipeline(pipeline, [*overrides, *extra])
        pre = Preprocessor.fit(spec, train)
        cols = pre.transform(train.head(4096)).columns()
        batches = [{k: v[i * 1024 : (i + 1) * 1024] for k, v in cols.items()} for i in range(4)]
        torch.manual_seed(0)
        model = build_model(mcfg.model.name, mcfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
        params = sum(p.numel() for p in model.parameters())
        models[label] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), batches, spec.tasks, params)

    def turn(label: str, steps: int) -> list[float]:
        model, opt, batches, tasks, _ = models[label]
        times = []
        for s in range(steps):
            b = batches[s % 4]
            t0 = time.process_time()
            out = model(features_only(b))
            loss = sum(F.binary_cross_entropy_with_logits(out[t.name], b["labels"][:, i]) for i, t in enumerate(tasks))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            times.append(time.process_time() - t0)
        return times

    steps = {label: args.steps * (5 if label == "mmoe_plain" else 1) for label in models}
    for label in models:
        turn(label, 2)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(args.rounds):
        for label in models:
            times[label] += turn(label, steps[label])
    base = statistics.median(times["mmoe_plain"])
    print("| model | params | CPU ms/step (median) | CPU ms/step (min) | × mmoe_plain step (median) |\n|---|---|---|---|---|")
    for label, ts in times.items():
        print(f"| {label} | {models[label][4]:,} | {1000 * statistics.median(ts):,.1f} | {1000 * min(ts):,.1f} | {statistics.median(ts) / base:.1f} |")


if __name__ == "__main__":
    main()
