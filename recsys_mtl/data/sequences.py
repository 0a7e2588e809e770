"""Moved to :mod:`recsys_mtl.features.sequences`; re-exported here so that existing imports keep working."""

from recsys_mtl.features.sequences import check_sequence_column, sequence_items

__all__ = ["check_sequence_column", "sequence_items"]
