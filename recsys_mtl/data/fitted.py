"""Moved to :mod:`recsys_mtl.features.fitted` (the feature kinds own their fitted state); re-exported here
so that existing imports keep working."""

from recsys_mtl.features.fitted import FIRST, MISSING, OOV, QUANTILE_STEPS, FittedNumeric, FittedTable

__all__ = ["FIRST", "MISSING", "OOV", "QUANTILE_STEPS", "FittedNumeric", "FittedTable"]
