"""Optuna studies over a pipeline: search space from its ``tune`` section, pruning, RDB storage, Pareto fronts."""

from recsys_mtl.tune.space_checks import check_space
from recsys_mtl.tune.paths import resolve
from recsys_mtl.tune.space import TuneConfig, parse_tune
from recsys_mtl.tune.study import StudyPlan, TuneResult, open_study, plan_study, quiet_optuna, run_workers, summary_table, tune

__all__ = [
    "TuneConfig", "StudyPlan", "TuneResult", "check_space", "open_study", "parse_tune", "plan_study", "resolve",
    "quiet_optuna", "run_workers", "summary_table", "tune",
]
