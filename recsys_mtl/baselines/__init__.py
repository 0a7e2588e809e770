"""Baselines a multitask model must beat, fitted on its own split and preprocessing.

One LightGBM per task, the pipeline's model trained on each task alone, and R-MTGB (a multitask
GBDT); compared per task with the multitask gain Δm and negative-transfer flags. LightGBM is the
optional ``baselines`` extra.
"""

from recsys_mtl.baselines.compare import delta_m, markdown_table, negative_transfer, summarize
from recsys_mtl.baselines.config import BaselinesConfig, baselines_config
from recsys_mtl.baselines.runner import BaselineReport, baselines_for_run, run_baselines

__all__ = [
    "BaselineReport",
    "BaselinesConfig",
    "baselines_config",
    "baselines_for_run",
    "delta_m",
    "markdown_table",
    "negative_transfer",
    "run_baselines",
    "summarize",
]
