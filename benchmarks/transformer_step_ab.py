"""MultiTab-Net's training step now against its previous attention path, in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python transformer_step_ab.py --rounds 6

Four models on the same census batches, taking turns (as in expert_step_time.py): the plain MMoE
reference (``mmoe_plain``), MultiTab-Net as its census pipeline sets it (2 heads), with the
previous default of 4 heads, and that 4-head model (same weights) with the previous forward:
``F.scaled_dot_product_attention`` (the fused CPU kernel) in every block, and the last block over
all tokens. Cross-process comparisons on the shared machine drift with
its load; within one process both variants see the same load. Prints ms per step (median and
minimum over all timed steps) and the multiple of the MMoE step.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
import torch.nn.functional as F
from torch import Tensor

from census_models import model_source
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import load_splits
from recsys_mtl.data.tensors import Batch, features_only
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.nn.transformer import SelfAttention, TransformerBlock
from recsys_mtl.spec import load_pipeline


def previous_attention(self: SelfAttention, x: Tensor, mask: Tensor | None = None, queries: slice | None = None) -> Tensor:
    b, n, d = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
    h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return self.out(h.transpose(1, 2).reshape(b, n, d))


def previous_block(self: TransformerBlock, x: Tensor, mask: Tensor | None = None, queries: slice | None = None) -> Tensor:
    x = x + self.drop(self.attn(self.norm1(x), mask))
    return x + self.drop(self.ffn(self.norm2(x)))


def previous_multitab(self, batch: Batch) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
    feats = self.tokenizer(batch)
    h = torch.cat([self.task_tokens.unsqueeze(0).expand(feats.shape[0], -1, -1), feats], dim=1)
    for block in self.blocks:
        h = block(h, self.attention_mask)
    return self.towers(list(self.norm(h[:, : len(self.task_names)]).unbind(dim=1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4, help="MultiTab steps per turn (MMoE takes 5× as many)")
    args = p.parse_args()

    cfg, _ = load_pipeline(model_source("multitab")[0])
    train = load_splits(cfg.data).train
    models = {}
    variants = (  # label, model source, overrides
        ("mmoe_plain", "mmoe_plain", []),
        ("multitab", "multitab", []),
        ("multitab_4heads", "multitab", ["model.params.n_heads=4"]),
        ("multitab_previous", "multitab", ["model.params.n_heads=4"]),  # the previous default too
    )
    for label, source, extra in variants:
        pipeline, overrides = model_source(source)
        mcfg, spec = load_pipeline(pipeline, [*overrides, *extra])
        pre = Preprocessor.fit(spec, train)
        cols = pre.transform(train.head(4096)).columns()
        batches = [{k: v[i * 1024 : (i + 1) * 1024] for k, v in cols.items()} for i in range(4)]
        torch.manual_seed(0)
        model = build_model(mcfg.model.name, mcfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
        models[label] = (model, torch.optim.Adam(model.parameters(), lr=1e-3), batches, spec.tasks)
    previous = models["multitab_previous"][0]
    previous.forward = types.MethodType(previous_multitab, previous)
    for m in previous.modules():
        if isinstance(m, TransformerBlock):
            m.forward = types.MethodType(previous_block, m)  # type: ignore[method-assign]
        if isinstance(m, SelfAttention):
            m.forward = types.MethodType(previous_attention, m)  # type: ignore[method-assign]
    with torch.no_grad():  # same weights, same function
        batch = features_only(models["multitab"][2][0])
        out, ref = models["multitab_4heads"][0](batch), previous(batch)
    diff = max(float((out[k] - ref[k]).abs().max()) for k in out)

    def turn(label: str, steps: int) -> list[float]:
        model, opt, batches, tasks = models[label]
        times = []
        for s in range(steps):
            b = batches[s % 4]
            t0 = time.perf_counter()
            out = model(features_only(b))
            loss = sum(F.binary_cross_entropy_with_logits(out[t.name], b["labels"][:, i]) for i, t in enumerate(tasks))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            times.append(time.perf_counter() - t0)
        return times

    steps = {label: args.steps * (5 if label == "mmoe_plain" else 1) for label in models}
    for label in models:
        turn(label, 2)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(args.rounds):
        for label in models:
            times[label] += turn(label, steps[label])
    base = statistics.median(times["mmoe_plain"])
    print(f"max |output difference| multitab_4heads vs previous path: {diff:.1e}\n")
    print("| model | ms/step (median) | ms/step (min) | × mmoe_plain step (median) |\n|---|---|---|---|")
    for label, ts in times.items():
        print(f"| {label} | {1000 * statistics.median(ts):,.1f} | {1000 * min(ts):,.1f} | {statistics.median(ts) / base:.1f} |")


if __name__ == "__main__":
    main()
