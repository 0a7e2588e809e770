"""Offline evaluation of an export on new labelled rows: metrics, calibration, slices, input drift."""

from recsys_mtl.evaluate.report import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]
