"""Where one model's training step spends its time: torch.profiler, per module, forward and backward.

    cd benchmarks && OMP_NUM_THREADS=1 python profile_step.py --model multitab --census
    cd benchmarks && OMP_NUM_THREADS=1 python profile_step.py --model mmoe_plain --census --set model.params.num_experts=4
    cd benchmarks && OMP_NUM_THREADS=1 python profile_step.py --model mmoe --precomputed-leaves   # the census recipe's training step

Same batches and step as expert_step_time.py (forward + loss + backward + optimizer, 1,024 rows), with
training's optimizer (``build_optimizer``: fused AdamW with the pipeline's lr and weight decay).
Each forward op is charged to the innermost module it ran in (block indices folded: ``blocks.*``),
each backward node to the module of the forward op that created it (the autograd sequence
number links the two), so a Linear's weight-gradient GEMMs count as that Linear's backward. Ops
of a module outside its submodules (attention's matmuls and softmax, residual adds) keep the
module's own name plus the op. Prints a markdown table of ms per step (mean over the profiled
steps), largest first, then the phase totals (forward, loss, backward, optimizer).

``--precomputed-leaves`` puts random (B, T) leaf indices into the batch under the loaders' key, as
training does after the trees are walked once per split (without it a GBDT model walks its
unfitted trees every step); the trees' content does not change the step's cost.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.profiler import record_function

from census_models import model_source
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.tensors import features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.nn.gbdt_leaves import LEAVES_KEY
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.optim import build_optimizer

SCOPE = "module::"
PHASES = ("forward", "loss", "backward", "optimizer")


def label_modules(model: nn.Module) -> None:
    """Open a profiler scope named after each submodule around its forward."""
    for name, module in model.named_modules():
        if not name:
            continue
        label = SCOPE + re.sub(r"\.\d+(?=\.|$)", ".*", name)
        stack: list[record_function] = []

        def enter(mod: nn.Module, args: object, label: str = label, stack: list = stack) -> None:
            scope = record_function(label)
            scope.__enter__()
            stack.append(scope)

        def leave(mod: nn.Module, args: object, out: object, stack: list = stack) -> None:
            stack.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def ancestors(event) -> Iterator:  # type: ignore[no-untyped-def]
    while event is not None:
        yield event
        event = event.cpu_parent


def breakdown(events, steps: int) -> tuple[dict[tuple[str, str], list[float]], dict[str, float]]:  # type: ignore[no-untyped-def]
    """(part, op) → [forward ms, backward ms] per step, and ms per step of each phase."""
    parts: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    phases = {p: 0.0 for p in PHASES}
    origin: dict[int, tuple[str, str]] = {}  # forward op's sequence number → (module, op)
    for e in events:
        if e.name in phases:
            phases[e.name] += e.cpu_time_total / 1000 / steps
    for e in events:  # forward: aten ops inside module scopes, charged to the outermost aten op
        if not e.name.startswith("aten::"):
            continue
        chain = list(ancestors(e))
        names = [a.name for a in chain]
        if "forward" not in names:
            continue
        top = [a for a in chain if a.name.startswith("aten::")][-1]
        module = next((n[len(SCOPE):] for n in names if n.startswith(SCOPE)), "(model)")
        key = (module, top.name.removeprefix("aten::"))
        if top is e:
            parts[key][0] += e.cpu_time_total / 1000 / steps
        if e.sequence_nr >= 0:  # the op (maybe nested, e.g. linear's addmm) that made an autograd node
            origin[e.sequence_nr] = key
    prefix = "autograd::engine::evaluate_function: "
    for e in events:  # backward: autograd nodes, charged to their forward op's module
        if not e.name.startswith(prefix):
            continue
        node = e.name[len(prefix):]
        key = ("(parameter grads)", node) if node.startswith("torch::autograd::AccumulateGrad") else origin.get(e.sequence_nr, ("(other)", node))
        parts[key][1] += e.cpu_time_total / 1000 / steps
    return parts, phases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="multitab")
    p.add_argument("--set", nargs="*", default=[], help="pipeline overrides, e.g. model.params.n_heads=1")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--precomputed-leaves", action="store_true", help="random GBDT leaves in the batch, as the training loaders carry them")
    args = p.parse_args()

    pipeline, overrides = model_source(args.model)
    cfg, spec = load_pipeline(pipeline, [*overrides, *args.set])
    train = load_splits(cfg.data).train
    pre = Preprocessor.fit(spec, train)
    batch = pre.transform(train.head(args.batch_size)).columns()
    torch.manual_seed(0)
    model = build_model(cfg.model.name, cfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
    opt = build_optimizer(model, nn.Module(), cfg.trainer)  # training's optimizer (fused AdamW), not a stand-in
    gbdt = getattr(getattr(model, "encoder", None), "gbdt", None)
    if args.precomputed_leaves and gbdt is not None:
        batch[LEAVES_KEY] = torch.randint(0, gbdt.cfg.num_leaves, (args.batch_size, gbdt.n_trees), dtype=gbdt.leaf_dtype())

    def step() -> None:
        with record_function("forward"):
            out = model(features_only(batch))
        with record_function("loss"):
            loss = sum(F.binary_cross_entropy_with_logits(out[t.name], batch["labels"][:, i]) for i, t in enumerate(spec.tasks))
        with record_function("backward"):
            loss.backward()  # type: ignore[union-attr]
        with record_function("optimizer"):
            opt.step()
            opt.zero_grad()

    for _ in range(3):
        step()
    label_modules(model)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    parts, phases = breakdown(prof.events(), args.steps)
    total = sum(phases.values())
    print(f"{args.model}: {total:.1f} ms per step under the profiler ({args.steps} steps)\n")
    print("| module | op | forward ms | backward ms | share of step |\n|---|---|---|---|---|")
    for (module, op), (fwd, bwd) in sorted(parts.items(), key=lambda kv: -sum(kv[1]))[: args.top]:
        print(f"| {module} | {op} | {fwd:.1f} | {bwd:.1f} | {100 * (fwd + bwd) / total:.1f}% |")
    print("\n| phase | ms per step |\n|---|---|")
    for phase, ms in phases.items():
        print(f"| {phase} | {ms:.1f} |")


if __name__ == "__main__":
    main()
