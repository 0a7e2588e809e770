"""MLPs, a batch of parallel experts, and softmax gates."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r} (choose from {sorted(ACTIVATIONS)})") from None


class MLP(nn.Sequential):
    """(B, in_dim) → (B, hidden[-1]) (or (B, in_dim) when ``hidden`` is empty).

    Each layer: Linear → [BatchNorm] → activation → Dropout.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        act: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        super().__init__(*layers)
        self.out_dim = d


class ParallelExperts(nn.Module):
    """``num_experts`` independent MLPs evaluated with one batched matmul per layer.

    (B, in_dim) → (B, E, hidden[-1]). Equivalent to a loop over ``E`` separate MLPs but a single
    einsum per layer, which both trains faster and exports to ONNX as one Einsum node.
    The last hidden activations are kept in ``last_output`` for diagnostics (sparsity).
    """

    def __init__(self, num_experts: int, in_dim: int, hidden: Sequence[int], act: str = "relu", dropout: float = 0.0):
        super().__init__()
        if num_experts < 1 or not hidden:
            raise ValueError("ParallelExperts needs num_experts >= 1 and at least one hidden layer")
        self.num_experts = num_experts
        self.out_dim = hidden[-1]
        dims = [in_dim, *hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(num_experts, d_in, d_out)
            bound = 1.0 / math.sqrt(d_in)
            nn.init.uniform_(w, -bound, bound)  # nn.Linear's default scale, per expert
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(num_experts, d_out).uniform_(-bound, bound)))
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.last_output: Tensor | None = None

    def forward(self, x: Tensor, side: Sequence[nn.Linear] = (), side_out: list[Tensor] | None = None) -> Tensor:
        """(B, in_dim) → (B, E, H) experts; with ``side`` linears (e.g. the gates' projections) their
        (B, out_k) outputs on ``x`` come from the same GEMM and are appended to ``side_out``.

        The first layer is one (B, in) @ (in, E·out + Σ out_k) GEMM: einsum would lower to a bmm
        over a broadcast copy of x, several times slower on CPU, and a gate on its own is a
        skinny (in → E) GEMM that costs far more than its FLOPs (census with GBDT leaves, 1,104
        inputs: ~10 % of the step). The weights are concatenated per call (parameters and state
        dict unchanged); the outputs are the separate layers' up to float rounding. The experts
        stay this module's output, so forward hooks (the balancers' capture) see them as before.
        """
        w0, b0 = self.weights[0], self.biases[0]
        d_in, width = w0.shape[1], self.num_experts * w0.shape[2]
        weight = w0.permute(1, 0, 2).reshape(d_in, width)
        bias = b0.reshape(width)
        if side:
            if side_out is None:
                raise ValueError("ParallelExperts: side linears need a side_out list")
            weight = torch.cat([weight, *(lin.weight.t() for lin in side)], dim=1)
            bias = torch.cat([bias, *(lin.bias for lin in side)])
        out = torch.addmm(bias, x, weight)
        # one split, not two slices: its backward is one cat, where each slice's backward
        # zero-fills and copies a full (B, width + Σ out_k) gradient (census 8 × [64]: 0.96 of the step)
        h, *sides = out.split([width, *(lin.out_features for lin in side)], dim=1)
        if side_out is not None:
            side_out += sides
        h = self.dropout(self.act(h.reshape(x.shape[0], self.num_experts, -1)))
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            h = self.dropout(self.act(torch.einsum("bei,eio->beo", h, w) + b))
        self.last_output = h.detach()
        return h


class Gate(nn.Module):
    """Softmax gate: (B, in_dim) → (B, num_experts) weights that sum to 1 per row.

    ``allowed`` ((num_experts,) bool, optional) masks experts out: their weight is exactly 0
    (their logit gets -inf before the softmax, an export-friendly Add). ``task`` (the task the
    gate serves; None for a gate every task reads) and ``owners`` (one label per expert: a task
    name, ``"shared"`` or ``"group:<name>"``) describe the gate's wiring to
    :mod:`recsys_mtl.diagnostics`; they do not change the computation.
    """

    def __init__(self, in_dim: int, num_experts: int, allowed: Tensor | None = None,
                 task: str | None = None, owners: Sequence[str] | None = None):
        super().__init__()
        self.proj = nn.Linear(in_dim, num_experts)
        self.last_weights: Tensor | None = None
        if owners is not None and len(owners) != num_experts:
            raise ValueError(f"Gate: {len(owners)} owners for {num_experts} experts")
        self.task = task
        self.owners: list[str] | None = list(owners) if owners is not None else None
        if allowed is not None:
            if allowed.shape != (num_experts,) or not bool(allowed.any()):
                raise ValueError(f"Gate: allowed must be ({num_experts},) with at least one True")
            self.register_buffer("log_mask", torch.zeros(num_experts).masked_fill(~allowed.bool(), float("-inf")))
        else:
            self.log_mask = None

    def forward(self, x: Tensor) -> Tensor:
        return self.weights(self.proj(x))

    def weights(self, logits: Tensor) -> Tensor:
        """(B, num_experts) logits of :attr:`proj` (computed by the caller, e.g. fused with the
        experts' first layer) → the gate's weights."""
        if self.log_mask is not None:
            logits = logits + self.log_mask
        w = torch.softmax(logits, dim=-1)
        self.last_weights = w.detach()
        return w

    def keeping(self, keep: Tensor) -> Gate:
        """A copy of this gate over only the experts at index ``keep`` ((E_kept,) long), with the
        same weights for them: when every dropped expert is masked out, the outputs are unchanged."""
        allowed = torch.isfinite(self.log_mask[keep]) if self.log_mask is not None else None
        owners = [self.owners[i] for i in keep.tolist()] if self.owners else None
        out = Gate(self.proj.in_features, len(keep), allowed if allowed is not None and not bool(allowed.all()) else None,
                   task=self.task, owners=owners)
        with torch.no_grad():
            out.proj.weight.copy_(self.proj.weight[keep])
            out.proj.bias.copy_(self.proj.bias[keep])
        return out


def mix(experts: Tensor, weights: Tensor) -> Tensor:
    """(B, E, H) experts, (B, E) weights → (B, H) weighted sum."""
    # broadcast multiply + sum: einsum lowers this to B tiny bmm's, much slower on CPU
    return (experts * weights.unsqueeze(-1)).sum(dim=1)


#: T·E·H at or above which :func:`mix_each` uses one bmm: torch's CPU bmm runs a naive per-row
#: loop below 400 multiply-adds per batch element (slower than broadcasting) and BLAS above it.
#: Census MMoE, 2 gates, process CPU per step: 8 × [64] experts (1,024) bmm 0.73 vs 0.83 of the
#: old step; 4 × [32] (256) 0.84 vs 0.75 (benchmarks/eager_step_ab.py --bmm-min-work 0).
BMM_MIX_MIN_WORK = 400


def mix_each(experts: Tensor, weights: Sequence[Tensor]) -> list[Tensor]:
    """(B, E, H) experts, T (B, E) weights → T (B, H) weighted sums: ``[mix(experts, w) for w in
    weights]`` up to float rounding.

    With several gates and T·E·H ≥ :data:`BMM_MIX_MIN_WORK`, one (B, T, E) @ (B, E, H) bmm: its
    backward is two bmm's, where each gate's broadcast multiply allocates and reduces a
    (B, E, H) product in both directions.
    """
    e, h = experts.shape[1:]
    if len(weights) < 2 or len(weights) * e * h < BMM_MIX_MIN_WORK:
        return [mix(experts, w) for w in weights]
    return list(torch.bmm(torch.stack(list(weights), dim=1), experts).unbind(1))


def experts_and_gates(bank: nn.Module, x: Tensor, gates: Sequence[Gate]) -> tuple[Tensor, list[Tensor]]:
    """(B, in_dim) → ``bank``'s (B, E, H) experts and each gate's (B, E_g) weights, all on ``x``.

    With a :class:`ParallelExperts` bank the gates' projections join its first GEMM (see
    :meth:`ParallelExperts.forward`); any other bank runs, and the gates run, on their own.
    """
    if not isinstance(bank, ParallelExperts) or not gates:
        return bank(x), [gate(x) for gate in gates]
    logits: list[Tensor] = []
    experts = bank(x, [gate.proj for gate in gates], logits)
    return experts, gate_weights(gates, logits)


def gate_weights(gates: Sequence[Gate], logits: Sequence[Tensor]) -> list[Tensor]:
    """T gates' (B, E) logits → their (B, E) weights: ``[g.weights(z) for g, z in zip(gates,
    logits)]`` up to float rounding (the weights may be non-contiguous views).

    Eager, with two or more gates over the same number of experts: one softmax over the E axis of
    a (T, E, B) stack. torch's CPU softmax over a short last axis walks the rows one by one
    (B = 1,024 rows of E = 8: ~0.2 ms a gate forward and as much backward, ~10 % of a census MMoE
    step); over a leading axis it vectorizes along B. Compiled or exported graphs keep the
    per-gate softmax (inductor fuses it; the ONNX graph stays as it was).
    """
    e = logits[0].shape[-1] if logits else 0
    masks = [gate.log_mask for gate in gates]
    masked = sum(m is not None for m in masks)
    # some gates masked, some not: their weights' dtypes differ under autocast (a float32 mask promotes)
    if len(gates) < 2 or any(z.shape[-1] != e for z in logits) or 0 < masked < len(gates) or torch.compiler.is_compiling():
        return [gate.weights(z) for gate, z in zip(gates, logits)]
    z = torch.stack(list(logits)).transpose(1, 2).contiguous()  # (T, E, B)
    if masked:
        z = z + torch.stack(masks).unsqueeze(-1)  # type: ignore[arg-type]
    weights = [w.t() for w in torch.softmax(z, dim=1).unbind(0)]
    for gate, w in zip(gates, weights):
        gate.last_weights = w.detach()
    return weights

