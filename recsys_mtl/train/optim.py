"""The training optimizer: dense layers with Adam, large embedding tables with a row-sparse optimizer.

A dense optimizer reads and writes every row of every embedding table (and both Adam moments)
on every step, so a step costs the size of the tables. Tables at or above
``trainer.sparse_min_rows`` rows instead produce sparse gradients (``nn.Embedding(sparse=True)``:
only the rows the batch looked up) and are stepped by a sparse optimizer that touches only
those rows and their state:

- ``sparse_adam``: :class:`~recsys_mtl.train.sparse_adam.RowSparseAdam`, ``torch.optim.SparseAdam``'s
  update and state computed on gathered rows (lazy Adam: the moments of a row move only when the
  row is in the batch; two moments per weight);
- ``rowwise_adagrad``: :class:`RowWiseAdagrad`, one accumulator per row (TorchRec / FBGEMM's
  default for large tables; a table's optimizer state is one float per row).

``trainer.embedding_optimizer: auto`` is ``sparse_adam`` (the same update as dense Adam for rows
in every batch); ``dense`` keeps every table dense. Both optimizers are joined in one
:class:`CombinedOptimizer`, so Lightning's automatic optimization, checkpoints, LR schedulers and
DDP work unchanged (DDP all-reduces sparse gradients on gloo).

Weight decay (decoupled, AdamW) applies to dense weight matrices only: biases and normalisation
parameters, embedding tables and numeric embeddings, and the balancer's own parameters (e.g.
uncertainty weighting's log-variances, which decay would pull towards equal weights) are never
decayed. Embeddings are excluded because decay shrinks every row by the same factor each step
while a rare id's row is updated only in the few batches that hold it, so rare ids would be
pulled to zero regardless of what they predict.

Schedules (``trainer.lr_schedule``), stepped per optimizer step over ``max_epochs``:

- ``constant``: the base learning rate throughout (after the optional linear warmup);
- ``cosine``: linear warmup over ``warmup_fraction`` of the steps, then cosine decay to
  ``min_lr_ratio`` × lr at the last step of ``max_epochs``;
- ``onecycle``: PyTorch's OneCycleLR (warmup to lr, cosine annealing), ``warmup_fraction`` as
  its ``pct_start``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from recsys_mtl.errors import SpecError
from recsys_mtl.nn.encoders import EmbeddingTables, FeatureEncoder
from recsys_mtl.nn.numeric_embeddings import NumericTokens
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.sparse_adam import RowSparseAdam


class RowWiseAdagrad(Optimizer):
    """Adagrad with one accumulator per row, for sparse gradients of (N, d) embedding weights.

    For each row r in the (coalesced) gradient: ``s_r += mean_j g_rj²``, ``w_r -= lr · g_r /
    (√s_r + eps)``, as FBGEMM's ``EXACT_ROWWISE_ADAGRAD``. Rows absent from the batch and their
    accumulators are untouched. State ``sum``: (N,) float32.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowWiseAdagrad takes sparse gradients (nn.Embedding(sparse=True))")
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
                grad = p.grad.coalesce()
                rows, values = grad.indices()[0], grad.values().float()
                acc = state["sum"].index_add_(0, rows, values.pow(2).mean(dim=1))
                update = values / (acc[rows].sqrt() + group["eps"]).unsqueeze(1)
                p.index_add_(0, rows, (-group["lr"] * update).to(p.dtype))
        return loss


SPARSE_OPTIMIZERS: dict[str, Callable[[list[Tensor], float], Optimizer]] = {
    # SparseAdam's update and state, on gathered rows (faster than its sparse-tensor ops)
    "sparse_adam": lambda params, lr: RowSparseAdam(params, lr=lr),
    "rowwise_adagrad": lambda params, lr: RowWiseAdagrad(params, lr=lr),
}
#: what ``auto`` resolves to
AUTO = "sparse_adam"


class CombinedOptimizer(Optimizer):
    """Several optimizers over disjoint parameters, stepped together as one.

    ``param_groups`` is the children's group dicts themselves, so an LR scheduler or Lightning
    setting ``lr`` on a group changes the child that owns it; ``state_dict`` holds each child's.
    """

    def __init__(self, optimizers: list[Optimizer]):
        # no Optimizer.__init__: the groups and state live in the children
        self.optimizers = optimizers
        self.defaults = {}
        self._optimizer_step_pre_hooks = {}  # type: ignore[assignment]
        self._optimizer_step_post_hooks = {}  # type: ignore[assignment]
        self._optimizer_state_dict_pre_hooks = {}  # type: ignore[assignment]
        self._optimizer_state_dict_post_hooks = {}  # type: ignore[assignment]
        self._optimizer_load_state_dict_pre_hooks = {}  # type: ignore[assignment]
        self._optimizer_load_state_dict_post_hooks = {}  # type: ignore[assignment]

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    @property  # type: ignore[override]
    def state(self) -> dict[Tensor, Any]:
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        with torch.enable_grad():
            loss = closure() if closure is not None else None
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for o, s in zip(self.optimizers, state_dict["optimizers"], strict=True):
            o.load_state_dict(s)

    def __repr__(self) -> str:
        return f"CombinedOptimizer({', '.join(type(o).__name__ for o in self.optimizers)})"


@torch.no_grad()
def clip_gradients(params: Iterable[Tensor], clip_val: float, algorithm: str = "norm") -> None:
    """``clip_grad_norm_`` / ``clip_grad_value_`` that also take sparse gradients (torch's do not):
    a sparse gradient counts by its coalesced values, so duplicate lookups add up first."""
    grads = []
    for p in params:
        if p.grad is not None:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()
                grads.append(p.grad._values())
            else:
                grads.append(p.grad)
    if not grads:
        return
    if algorithm == "value":
        for g in grads:
            g.clamp_(-clip_val, clip_val)
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    scale = (clip_val / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))


def embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """Every embedding table of ``model``'s encoders, by module path (shared tables once)."""
    out: dict[str, nn.Embedding] = {}
    seen: set[int] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, EmbeddingTables):
            for name, emb in module.tables.items():
                if id(emb) not in seen:
                    seen.add(id(emb))
                    out[f"{prefix}.tables.{name}" if prefix else f"tables.{name}"] = emb  # type: ignore[assignment]
    return out


def use_sparse_embeddings(model: nn.Module, cfg: TrainerConfig) -> list[str]:
    """Switch the tables with at least ``cfg.sparse_min_rows`` rows to sparse gradients.

    Must run before DDP wraps the model (DDP buckets sparse gradients by the ``sparse`` flag).
    The fused lookup of an encoder concatenates its tables' weights, which would make their
    gradient dense, so it is turned off in encoders that use a sparse table. Returns the names.
    """
    if cfg.embedding_optimizer == "dense":
        return []
    chosen = {n: e for n, e in embedding_tables(model).items() if e.num_embeddings >= cfg.sparse_min_rows}
    for emb in chosen.values():
        emb.sparse = True
    for module in model.modules():
        if isinstance(module, FeatureEncoder) and any(module.embeddings[t].sparse for t in module.cat_tables):
            module.fused = False
    return sorted(chosen)


#: modules whose parameters are embeddings (never decayed)
EMBEDDING_MODULES: tuple[type[nn.Module], ...] = (nn.Embedding, FeatureEncoder, NumericTokens)


def param_groups(model: nn.Module, balancer: nn.Module, weight_decay: float, exclude: Iterable[Tensor] = ()) -> list[dict[str, Any]]:
    """Named groups ``embeddings``, ``dense`` (decayed), ``dense_no_decay``, ``balancer``; empty groups
    dropped. ``exclude`` (the sparse tables of :func:`use_sparse_embeddings`) is left to the sparse optimizer."""
    excluded = {id(p) for p in exclude}
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, EMBEDDING_MODULES) for p in m.parameters()
    }
    groups: dict[str, list[nn.Parameter]] = {"embeddings": [], "dense": [], "dense_no_decay": []}
    for p in model.parameters():
        if not p.requires_grad or id(p) in excluded:
            continue
        key = "embeddings" if id(p) in embedding_ids else ("dense" if p.ndim >= 2 else "dense_no_decay")
        groups[key].append(p)
    out = [
        {"name": name, "params": params, "weight_decay": weight_decay if name == "dense" else 0.0}
        for name, params in groups.items()
    ]
    out.append({"name": "balancer", "params": [p for p in balancer.parameters() if p.requires_grad], "weight_decay": 0.0})
    return [g for g in out if g["params"]]


def _cosine(total: int, warmup: int, floor: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig, total_steps: int | None) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler for ``cfg.lr_schedule`` over ``total_steps`` optimizer steps, or None (constant, no warmup)."""
    if cfg.lr_schedule == "constant" and not cfg.warmup_fraction:
        return None
    if total_steps is None:
        raise SpecError(
            f"trainer.lr_schedule {cfg.lr_schedule!r} / warmup_fraction need the number of training steps, "
            "unknown for this data stream: set trainer.limit_train_batches"
        )
    warmup = int(round(cfg.warmup_fraction * total_steps))
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 2), pct_start=max(cfg.warmup_fraction, 1e-3),
            anneal_strategy="cos", cycle_momentum=False, final_div_factor=1.0 / max(cfg.min_lr_ratio, 1e-4) / 25.0,
        )
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(total_steps, warmup, cfg.min_lr_ratio))
    if warmup:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return None


#: devices whose AdamW has a fused kernel (one call per step for every tensor; the default
#: per-tensor loop on CPU costs ~1 ms per step of Python and small ops on the census MMoE)
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def dense_adamw(groups: list[dict[str, Any]], lr: float) -> Optimizer:
    """AdamW over ``groups``, fused when every parameter is a floating tensor on a device with the
    fused kernel (the same update; state and checkpoints as the unfused optimizer's)."""
    params = [p for g in groups for p in g["params"]]
    fused = all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in params)
    fused = fused and len({p.device for p in params}) == 1
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def build_optimizer(model: nn.Module, balancer: nn.Module, cfg: TrainerConfig) -> Optimizer:
    """AdamW over :func:`param_groups` (decay on dense weights only), plus the sparse optimizer on
    tables switched by :func:`use_sparse_embeddings`, combined into one when both exist."""
    sparse = [e.weight for e in embedding_tables(model).values() if e.sparse and e.weight.requires_grad]
    groups = param_groups(model, balancer, cfg.weight_decay, exclude=sparse)
    optimizers: list[Optimizer] = [dense_adamw(groups, cfg.lr)] if groups else []
    if sparse:
        name = AUTO if cfg.embedding_optimizer == "auto" else cfg.embedding_optimizer
        optimizers.append(SPARSE_OPTIMIZERS[name](sparse, cfg.embedding_lr or cfg.lr))
    return optimizers[0] if len(optimizers) == 1 else CombinedOptimizer(optimizers)


def needs_schedule(cfg: TrainerConfig) -> bool:
    return cfg.lr_schedule != "constant" or bool(cfg.warmup_fraction)


def configure(model: nn.Module, balancer: nn.Module, cfg: TrainerConfig, total_steps: int | None) -> Any:
    """Lightning's ``configure_optimizers`` answer: the optimizer, with the step-wise schedule when
    ``cfg`` asks for one."""
    optimizer = build_optimizer(model, balancer, cfg)
    scheduler = lr_scheduler(optimizer, cfg, total_steps)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
