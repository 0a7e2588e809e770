"""Encoded columns as contiguous tensors, and the batch dictionary models consume."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: a batch is a flat dict so it crosses Lightning, DDP and ONNX export unchanged:
#: "categorical" (B, C) int64, "numeric" (B, M) float32, "seq.<name>" (B, L) int64,
#: and for training "labels" (B, T) float32, "weights" (B, T) float32, and when the spec groups
#: rows for grouped AUC "groups" (B, G) int64 (group codes per split, 0 = no group).
Batch = dict[str, Tensor]
SEQ_PREFIX = "seq."


@dataclass
class EncodedTable:
    categorical: Tensor
    numeric: Tensor
    sequences: dict[str, Tensor]
    labels: Tensor
    weights: Tensor
    groups: Tensor | None = None

    def __len__(self) -> int:
        return self.labels.shape[0]

    def columns(self) -> Batch:
        out = {"categorical": self.categorical, "numeric": self.numeric}
        out.update({SEQ_PREFIX + k: v for k, v in self.sequences.items()})
        out["labels"] = self.labels
        out["weights"] = self.weights
        if self.groups is not None:
            out["groups"] = self.groups
        return out

    def permuted(self, perm: Tensor) -> "EncodedTable":
        """A copy with rows reordered: one gather per column, so batches are contiguous slices."""
        return EncodedTable(
            categorical=self.categorical[perm],
            numeric=self.numeric[perm],
            sequences={k: v[perm] for k, v in self.sequences.items()},
            labels=self.labels[perm],
            weights=self.weights[perm],
            groups=None if self.groups is None else self.groups[perm],
        )


def slice_batch(columns: Batch, start: int, stop: int) -> Batch:
    return {k: v[start:stop] for k, v in columns.items()}


def features_only(batch: Batch) -> Batch:
    return {k: v for k, v in batch.items() if k not in ("labels", "weights", "groups")}
