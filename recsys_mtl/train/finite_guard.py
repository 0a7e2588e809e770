"""Stop a fit at the first non-finite training loss, naming the step, the task and (when one is
to blame) the input feature.

A NaN or infinite loss poisons every weight at the next optimizer step; training on would write
NaN metrics, calibration and curves as if they were results. The guard runs inside the training
step, before the backward pass, so the last checkpoint on disk is still the last good one. Under
DDP the decision is reduced over all ranks (one boolean all-reduce per step), so every rank stops
at the same step instead of the healthy ranks waiting on the failed one forever.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from recsys_mtl.errors import RecsysMTLError


class NonFiniteLossError(RecsysMTLError):
    """The training loss became NaN or infinite; the message names the step, the task and the cause."""


def nonfinite_total(total: Tensor) -> bool:
    """True when the scalar loss ``total`` () is NaN or ±inf: one host read, no other op.

    A sum is non-finite when any of its terms is (or when it overflows), so for ``total`` =
    ``losses.sum()`` (+ more terms) this also tests every per-task loss, with one scalar read
    instead of a concatenation, an elementwise test and a reduction (twice per training step)."""
    return not math.isfinite(float(total.detach()))


def describe(
    *, step: int, epoch: int, task_names: Sequence[str], losses: Tensor, total: Tensor,
    numeric: Tensor | None, numeric_names: Sequence[str], logits: dict[str, Tensor] | None, params: Sequence[Tensor],
) -> str:
    """The error line: which task's loss went non-finite at which step, and the likeliest cause.

    ``losses`` (T,), ``total`` (), ``numeric`` the batch's (B, M) float32 numeric matrix whose
    columns ``numeric_names`` names; ``logits`` task → (B,) or (B, C) model outputs.
    """
    bad_tasks = [name for name, v in zip(task_names, losses.detach().float().tolist()) if not math.isfinite(v)]
    where = f"task {bad_tasks[0]!r}" if bad_tasks else "the balanced total (every task's loss is finite)"
    if len(bad_tasks) > 1:
        where += f" (and {len(bad_tasks) - 1} more)"
    values = ", ".join(f"{n}={v:.4g}" for n, v in zip(task_names, losses.detach().float().tolist()))
    cause = _cause(numeric, numeric_names, logits, params)
    return (
        f"training loss is not finite at step {step} (epoch {epoch}) in {where}: {values}, total {float(total.detach()):.4g}; "
        f"{cause}. The fit stopped; the run folder keeps the last good checkpoint and is marked FAILED"
    )


def _cause(numeric: Tensor | None, names: Sequence[str], logits: dict[str, Tensor] | None, params: Sequence[Tensor]) -> str:
    if numeric is not None and numeric.numel():
        bad = ~torch.isfinite(numeric)
        if bad.any():
            col = int(bad.any(0).nonzero()[0])
            row = int(bad[:, col].nonzero()[0])
            name = names[col] if col < len(names) else f"numeric column {col}"
            return f"input feature {name!r} is not finite in float32 (row {row} of the batch)"
    if any(not bool(torch.isfinite(p).all()) for p in params):
        return "the model's weights are no longer finite (a learning rate too high, or no gradient clipping?)"
    if logits is not None:
        for task, out in logits.items():
            if not bool(torch.isfinite(out).all()):
                return f"the model's output for task {task!r} is not finite"
    return "inputs, weights and outputs are finite: the loss itself overflowed (check labels, sample weights and the balancer)"
