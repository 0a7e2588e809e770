"""One training step of the large_vocab.py MMoE, by part: table size and embedding optimizer.

    python benchmarks/large_vocab_step.py [--pairs 3]

No data and no trainer: the model of benchmarks/large_vocab.py built for 1k × 1k or 1M × 300k
user × item tables, random index batches of 1,024 rows, one thread. Prints the mean process CPU
milliseconds of forward, backward and optimizer step over 55 steps (5 warm-up steps dropped)
per case, so the cost the table size adds to a step is seen apart from loading and Lightning.
``torch_sparse_adam`` is ``torch.optim.SparseAdam`` in place of the default ``sparse_adam``
(``RowSparseAdam``: the same update on gathered rows), the default before issue #25.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_vocab import SPEC  # noqa: E402

from recsys_mtl.balancing import build_balancer  # noqa: E402
from recsys_mtl.data.preprocess import Layout  # noqa: E402
from recsys_mtl.models import ModelContext, build_model  # noqa: E402
from recsys_mtl.spec.features import FeatureSpec  # noqa: E402
from recsys_mtl.spec.pipeline import TrainerConfig  # noqa: E402
from recsys_mtl.train import optim  # noqa: E402
from recsys_mtl.train.module import MultiTaskModule  # noqa: E402

SIZES = {"small": (1_002, 1_002), "large": (1_000_002, 300_002)}


def step_parts(users: int, items: int, optimizer: str, steps: int = 60, batch: int = 1024) -> dict[str, float]:
    spec = FeatureSpec.model_validate(SPEC)
    layout = Layout(
        categorical=[(n, n) for n in ("user", "item", "device", "hour")], numeric=[f"x{i}" for i in range(4)],
        tables={"user": (users, 16), "item": (items, 16), "device": (7, 4), "hour": (26, 4)},
    )
    torch.manual_seed(0)
    model = build_model("mmoe", {"num_experts": 4, "expert_hidden": [64], "tower_hidden": [32]}, ModelContext(layout=layout, tasks=spec.tasks))
    chosen = "sparse_adam" if optimizer == "torch_sparse_adam" else optimizer
    module = MultiTaskModule(model, spec.tasks, build_balancer("equal", {}, model.task_names), TrainerConfig(embedding_optimizer=chosen))  # type: ignore[arg-type]
    default = optim.SPARSE_OPTIMIZERS["sparse_adam"]
    if optimizer == "torch_sparse_adam":
        optim.SPARSE_OPTIMIZERS["sparse_adam"] = lambda params, lr: torch.optim.SparseAdam(params, lr=lr)
    try:
        opt = module.configure_optimizers()
    finally:
        optim.SPARSE_OPTIMIZERS["sparse_adam"] = default
    highs = (users, items, 7, 26)
    parts = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for i in range(steps):
        b = {
            "categorical": torch.stack([torch.randint(2, h, (batch,)) for h in highs], 1), "numeric": torch.randn(batch, 4),
            "labels": torch.randint(0, 2, (batch, 2)).float(), "weights": torch.ones(batch, 2),
        }
        t0 = time.process_time()
        loss = module.task_losses(module(b), b).sum()
        t1 = time.process_time()
        opt.zero_grad()
        loss.backward()
        t2 = time.process_time()
        opt.step()
        t3 = time.process_time()
        if i >= 5:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[k] += v
    return {k: round(v / (steps - 5) * 1000, 2) for k, v in parts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-dense", action="store_true", help="also the large tables with dense Adam (slow)")
    ap.add_argument("--pairs", type=int, default=0,
                    help="then this many more small / large (default optimizer) pairs, alternated against load drift")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("small", "auto"), ("large", "auto"), ("large", "torch_sparse_adam"), ("large", "rowwise_adagrad"), ("small", "auto"), ("large", "auto")]
    if args.with_dense:
        cases.insert(1, ("large", "dense"))
    cases += [("small", "auto"), ("large", "auto")] * args.pairs
    totals: dict[str, list[float]] = {"small": [], "large": []}
    for size, optimizer in cases:
        parts = step_parts(*SIZES[size], optimizer, steps=15 if optimizer == "dense" else 60)
        total = round(sum(parts.values()), 2)
        if optimizer == "auto":
            totals[size].append(total)
        print(json.dumps({"tables": size, "embedding_optimizer": optimizer, "cpu_ms": parts, "total_ms": total}), flush=True)
    # the large step's rate against the small one's at the default optimizer, over every run of each
    rate = (sum(totals["small"]) / len(totals["small"])) / (sum(totals["large"]) / len(totals["large"]))
    print(json.dumps({"large_rate_vs_small_default": round(rate, 3), "small_ms": totals["small"], "large_ms": totals["large"]}))


if __name__ == "__main__":
    main()
