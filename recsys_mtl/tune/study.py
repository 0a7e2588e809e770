"""Run an Optuna study over a pipeline: trials fit on train/val only, the winner is refit once.

Study area (``<runs_dir>/tune/<study>/``)::

    study.db        default SQLite storage (any RDB URL via ``tune.storage`` / ``--storage``)
    trials/         one run folder per trial (no test metrics: trials never see the test split)
    plots/          optimization history, parameter importances, Pareto front (HTML or PNG)
    summary.json    objectives, every finished trial, the Pareto front / best trial, the refit run
    trials.csv      one row per trial: number, state, values, params, seconds

Every worker opens the same storage with a heartbeat, recorded from the moment a trial runs
(:mod:`recsys_mtl.tune.heartbeat`); a worker killed mid-trial leaves a RUNNING trial whose heartbeat
stops, which the next worker to start a trial marks FAIL and, through
RetryHeartbeatStaleTrialCallback (formerly RetryFailedTrialCallback), re-enqueues with the same parameters. ``n_trials`` is the study's total
of finished (complete + pruned) trials over all workers; a trial that finds ``n_trials`` earlier
trials finished or running does no work, is marked FAIL with the user attribute ``surplus``, and
stops its worker.

A study records the pipeline its trials run with (:mod:`recsys_mtl.tune.fingerprint`) when it is
created; reopening it with another pipeline is refused, naming the changed fields, unless
``tune.allow_changed_pipeline`` (docs/reference.md, "Resuming a study").
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import optuna
import sqlalchemy.exc
from lightning.pytorch.trainer.states import TrainerFn
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from recsys_mtl.data.sources import DataSource, data_source
from recsys_mtl.errors import RecsysMTLError, SpecError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import load_pipeline
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.fit import FitResult, Prepared, fit, prepare
from recsys_mtl.train.loggers import mlflow_assignments
from recsys_mtl.tune.fingerprint import FINGERPRINT_ATTR, PIPELINE_ATTR, changes, fingerprint, pipeline_identity, recorded_by_path
from recsys_mtl.tune.gc_freeze import frozen_heap
from recsys_mtl.tune.heartbeat import HeartbeatFromStartStorage
from recsys_mtl.tune.space_checks import check_space
from recsys_mtl.tune.params import encode_choice
from recsys_mtl.tune.pick import Pick, confirm, pick_over_default
from recsys_mtl.tune.paths import default_assignment, resolve, sample
from recsys_mtl.tune.space import TuneConfig, parse_tune

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: user attribute marking the enqueued untuned pipeline
ROLE, DEFAULT = "role", "default"


@dataclass
class StudyPlan:
    """A validated study: pipeline, spec, tune section and where things go."""

    cfg: PipelineConfig
    spec: FeatureSpec
    tune: TuneConfig
    study_name: str
    storage_url: str
    area: Path
    metrics: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)


def plan_study(
    pipeline: str | Path,
    overrides: Sequence[str] = (),
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    runs_dir: Path | None = None,
) -> StudyPlan:
    """Load and check everything (space paths, values, metrics) before any data is read."""
    cfg, spec = load_pipeline(pipeline, overrides)
    if runs_dir is not None:
        cfg = cfg.model_copy(update={"runs_dir": runs_dir})
    tune = parse_tune(cfg.tune, str(pipeline))
    updates = {k: v for k, v in {"n_trials": n_trials, "timeout": timeout, "storage": storage, "study_name": study_name}.items() if v is not None}
    tune = tune.model_copy(update=updates)
    check_space(tune, cfg, spec, str(pipeline))
    name = tune.study_name or cfg.name
    area = cfg.runs_dir / "tune" / name
    url = tune.storage or f"sqlite:///{area / 'study.db'}"
    objective = tune.objective
    return StudyPlan(cfg, spec, tune, name, url, area, objective.objective_metrics(cfg, spec), objective.objective_directions(cfg, spec))


def open_study(plan: StudyPlan) -> optuna.Study:
    """Create or load the study in its RDB storage, with heartbeat-based failure of dead workers."""
    plan.area.mkdir(parents=True, exist_ok=True)
    t = plan.tune
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = _storage(plan)
    study = optuna.create_study(
        study_name=plan.study_name,
        storage=storage,
        sampler=t.make_sampler(),
        pruner=t.make_pruner(),
        directions=plan.directions,
        load_if_exists=True,
    )
    if study.user_attrs.get("metrics") not in (None, plan.metrics):
        raise SpecError(f"study {plan.study_name!r} in {plan.storage_url} optimises {study.user_attrs['metrics']}, not {plan.metrics}")
    identity = pipeline_identity(plan.cfg, plan.spec, plan.tune)  # reads each data file's ends: once
    check_same_pipeline(study, plan, identity)
    if not study.trials:  # a fresh study: record its pipeline and objectives, queue the requested first trials
        study.set_user_attr(PIPELINE_ATTR, identity)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint(identity))
        study.set_user_attr("metrics", plan.metrics)
        if t.enqueue_default:
            fixed, outside = default_assignment(t.space, plan.cfg)
            study.set_user_attr("default_outside_space", outside)
            study.enqueue_trial({k: encode_choice(v) for k, v in fixed.items()}, user_attrs={ROLE: DEFAULT, "fixed": list(fixed)})
        for assignment in t.enqueue:
            study.enqueue_trial({k: encode_choice(v) for k, v in assignment.items()}, skip_if_exists=True)
    return study


class LegacyStudyWarning(UserWarning):
    """A study created before studies recorded their pipeline: resumed without the check."""


def check_same_pipeline(study: optuna.Study, plan: StudyPlan, identity: dict[str, Any]) -> None:
    """Refuse to resume ``study`` with a pipeline (``identity``: its :func:`pipeline_identity`) other than
    the one its trials ran with (:mod:`recsys_mtl.tune.fingerprint`), unless ``tune.allow_changed_pipeline``; a study without a recorded
    pipeline (created before the check) resumes with a :class:`LegacyStudyWarning`."""
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    where = f"study {plan.study_name!r} in {plan.storage_url.split('@')[-1]}"
    if recorded is None:
        if study.trials:
            warnings.warn(f"{where} has no recorded pipeline (created before studies recorded one): resuming it without "
                          "checking that its trials ran with this pipeline", LegacyStudyWarning, stacklevel=2)
        return
    if fingerprint(identity) == recorded:
        return
    if recorded_by_path(recorded, plan.cfg, plan.spec, plan.tune):  # recorded before data entered by content
        log.info("%s: its pipeline record names data files by path; rewritten by content", where)
        study.set_user_attr(PIPELINE_ATTR, identity)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint(identity))
        return
    changed = changes(study.user_attrs.get(PIPELINE_ATTR, {}), identity) or ["(fingerprints differ; no field-level difference in the recorded copy)"]
    if plan.tune.allow_changed_pipeline:
        log.warning("%s: resuming with a changed pipeline (tune.allow_changed_pipeline): %s", where, "; ".join(changed))
        study.set_user_attr("resumed_with_changes", [*study.user_attrs.get("resumed_with_changes", []), changed])
        return
    n = len(study.get_trials(deepcopy=False, states=FINISHED))
    raise SpecError(
        f"{where} was created with another pipeline; its {n} finished trial(s) would be ranked with trials of this one. "
        f"Changed (study -> now): {'; '.join(changed)}. To go on: start a new study (--study NAME or tune.study_name) or "
        "another storage (--storage, --runs-dir), or rank both pipelines' trials together with --set tune.allow_changed_pipeline=true"
    )


def _storage(plan: StudyPlan, attempts: int = 5) -> RDBStorage:
    t = plan.tune
    for attempt in range(attempts):
        try:
            return HeartbeatFromStartStorage(  # a worker killed right after ask() leaves a trial that can go stale
                plan.storage_url,
                heartbeat_interval=t.heartbeat_interval,
                grace_period=t.grace_period,
                # Optuna 5's name for RetryFailedTrialCallback: re-enqueue a dead worker's trial with its params
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=t.max_retry),
            )
        except sqlalchemy.exc.SQLAlchemyError:
            # workers started together race to create the schema (PostgreSQL: "type ... already exists"); the loser retries
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


class _FitOnlyPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback, silent outside ``fit`` (the final re-validation)."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_end(trainer, pl_module)


class TrialObjective:
    """One trial: sample, resolve the pipeline, fit on train/val (pruning per epoch), return val objective(s)."""

    def __init__(self, plan: StudyPlan, prepared: Prepared):
        self.plan = plan
        self.prepared = prepared
        self.base_raw = plan.cfg.model_dump(mode="python")

    def monitor_overrides(self) -> tuple[dict[str, Any], str | None]:
        """Trainer monitor / mode for checkpoint selection, and the metric the pruner watches."""
        return self.plan.tune.objective.trial_monitor(self.plan.metrics, self.plan.directions)  # type: ignore[arg-type]

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        plan = self.plan
        _claim_slot(trial, plan.tune.n_trials)
        if trial.user_attrs.get(ROLE) == DEFAULT:  # exactly the pipeline: only the enqueued values, nothing sampled
            fixed = trial.user_attrs.get("fixed", [])
            params = {p: plan.tune.space[p].suggest(trial, p) for p in plan.tune.space if p in fixed}
        else:
            params = sample(plan.tune.space, trial, self.base_raw)
        trial.set_user_attr("assignments", params)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        monitor, prune_on = self.monitor_overrides()
        cfg = resolve(
            plan.cfg,
            {
                **plan.tune.trial_overrides,
                **params,
                **monitor,
                "trainer.progress_bar": False,
                "name": f"trial{trial.number:04d}",
                "runs_dir": plan.area / "trials",
                **mlflow_assignments(plan.cfg),
            },
        )
        callbacks: list[L.Callback] = plan.tune.objective.trial_callbacks()
        pruning = _FitOnlyPruning(trial, monitor=prune_on) if prune_on else None
        if pruning is not None:
            callbacks.append(pruning)
        result = fit(cfg, plan.spec, prepared=self.prepared, extra_callbacks=callbacks, evaluate_test=False)
        if pruning is not None:
            pruning.check_pruned()  # DDP: the pruning decision travels through storage
        val = result.metrics["val"]
        trial.set_user_attr("run_dir", str(result.run_dir))
        trial.set_user_attr("val", val)
        trial.set_user_attr("epochs_run", result.metrics["epochs_run"])
        values = self.values(val)
        return values[0] if len(values) == 1 else values

    def values(self, val: dict[str, float]) -> list[float]:
        return self.plan.tune.objective.trial_values(val, self.plan.metrics)


class SurplusTrial(RecsysMTLError):
    """Raised in a trial that other workers' trials already leave no room for (marked FAIL, user attr ``surplus``)."""


def _claim_slot(trial: optuna.Trial, target: int | None) -> None:
    """Stop this worker if ``target`` finished-or-running trials numbered before this one already exist.

    MaxTrialsCallback checks the count after a trial and before the next is created, so two workers that
    finish together both see room for one more. Trial numbers are assigned by the storage, so ranking by
    number gives every worker the same answer: the later trial of the two steps aside before doing any work.
    """
    if target is None:
        return
    earlier = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    if sum(t.number < trial.number for t in earlier) >= target:
        trial.set_user_attr("surplus", True)
        trial.study.stop()
        raise SurplusTrial(f"trial {trial.number} not run: the study already has n_trials={target} trials finished or running")


class _Progress:
    """One line per finished trial (works in CI logs, unlike a progress bar)."""

    def __init__(self, plan: StudyPlan, stream: Any = None):
        self.plan = plan
        self.stream = stream or sys.stdout

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
        total = self.plan.tune.n_trials or "?"
        secs = trial.duration.total_seconds() if trial.duration else 0.0
        if trial.state == TrialState.COMPLETE:
            shown = "  ".join(f"{m}={v:.4f}" for m, v in zip(self.plan.metrics if len(trial.values) > 1 else ["objective"], trial.values))
        elif trial.state == TrialState.PRUNED:
            shown = f"pruned after epoch {trial.last_step}"
        elif trial.user_attrs.get("surplus"):
            shown = "not run (n_trials reached with other workers' trials)"
        else:
            shown = trial.state.name.lower()
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.user_attrs.get("assignments", {}).items())
        print(f"[{done}/{total}] trial {trial.number}: {shown}  ({secs:.1f}s)  {params}", file=self.stream, flush=True)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def quiet_optuna() -> None:
    """Silence Optuna's per-trial INFO lines: the runner prints its own progress line per trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class TuneResult:
    study: optuna.Study
    plan: StudyPlan
    chosen: FrozenTrial | None
    refit: FitResult | None
    plots: list[Path]
    summary_path: Path
    #: the untuned pipeline's refit (None when it is the chosen trial, or not asked for)
    default_refit: FitResult | None = None
    #: the refit of the trial picked on the trials' validation when the default's refit beat it (see pick.confirm)
    rejected_refit: FitResult | None = None


def run_workers(plan: StudyPlan, source: DataSource | None = None) -> tuple[optuna.Study, DataSource]:
    """This process's share of the study: trials until the study has ``n_trials`` finished or time is up."""
    study = open_study(plan)
    source = source or data_source(plan.cfg.data)  # its frames are read once, shared with the refit
    target = plan.tune.n_trials
    if target is not None and _finished(study) >= target:
        return study, source
    # encoded once; every trial reuses the tables (a seeded share of train when train_fraction < 1)
    prepared = prepare(plan.cfg, plan.spec, source=source, train_fraction=plan.tune.train_fraction)
    callbacks: list[Any] = [_Progress(plan)]
    if target is not None:
        # counts other workers' running trials too, so the total stops at n_trials
        callbacks.append(MaxTrialsCallback(target, states=(*FINISHED, TrialState.RUNNING)))
    quiet = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)  # no per-trial "GPU available" banners
    try:
        with frozen_heap():  # gc_after_trial's collections walk only what the study creates
            study.optimize(
                TrialObjective(plan, prepared),
                n_trials=None if target is None else target - _finished(study),
                timeout=plan.tune.timeout,
                callbacks=callbacks,
                show_progress_bar=False,
                gc_after_trial=True,
                # a trial whose sampled combination is rejected or diverges is marked FAIL; the study goes on
                catch=(RecsysMTLError, ValueError, RuntimeError, FloatingPointError),
            )
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return study, source


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def choose_trial(study: optuna.Study, plan: StudyPlan) -> FrozenTrial | None:
    """The trial to refit (see :mod:`recsys_mtl.tune.pick`); None when no trial completed."""
    chosen = choose(study, plan)
    return None if chosen is None else chosen.trial


def choose(study: optuna.Study, plan: StudyPlan) -> Pick | None:
    """The trial to refit and why, chosen on validation only: a trial that beats the enqueued default on
    every objective, else the default; without a default, the best (or ``refit_pareto_index``-th Pareto) trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    front = [study.best_trial] if len(plan.directions) == 1 else pareto_front(study, plan)
    default = default_trial(study)
    if default is not None:
        return pick_over_default(front, default, plan.directions, plan.tune.refit_min_gain)
    if len(plan.directions) == 1:
        return Pick(front[0], "best validation objective (no default trial)")
    index = min(plan.tune.refit_pareto_index, len(front) - 1)
    return Pick(front[index], f"Pareto trial {index} by the first objective (no default trial)")


def pareto_front(study: optuna.Study, plan: StudyPlan) -> list[FrozenTrial]:
    sign = 1 if plan.directions[0] == "maximize" else -1
    return sorted(study.best_trials, key=lambda t: -sign * t.values[0])


#: fits a refit's pipeline on another engine (``recsys_mtl.train.ray_fit.RayRefit``); it reads the data itself
RefitFn = Callable[[PipelineConfig, FeatureSpec], FitResult]


def refit(plan: StudyPlan, trial: FrozenTrial, source: DataSource, suffix: str = "tuned", refit_fit: RefitFn | None = None) -> FitResult:
    """Fit the pipeline with the trial's parameters into a normal run folder; the one test evaluation."""
    cfg = resolve(plan.cfg, {**trial.user_attrs["assignments"], "name": f"{plan.cfg.name}-{suffix}",
                             **mlflow_assignments(plan.cfg)})
    return refit_fit(cfg, plan.spec) if refit_fit is not None else fit(cfg, plan.spec, source=source)


def default_trial(study: optuna.Study) -> FrozenTrial | None:
    """The enqueued untuned pipeline's trial, when it finished."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(ROLE) == DEFAULT:
            return t
    return None


def tune(plan: StudyPlan, *, do_refit: bool = True, source: DataSource | None = None, refit_fit: RefitFn | None = None) -> TuneResult:
    """Run this worker's trials, then (``do_refit``) refit the chosen trial, write plots and a summary.

    ``refit_fit`` fits the refits elsewhere (``tune --engine ray``); trials always run in this process.
    """
    from recsys_mtl.tune.plots import write_plots

    started = time.perf_counter()
    study, source = run_workers(plan, source)
    pick = choose(study, plan)
    chosen = None if pick is None else pick.trial
    result = refit(plan, chosen, source, refit_fit=refit_fit) if do_refit and chosen is not None else None
    default = default_trial(study)
    default_result = rejected = None
    if do_refit and plan.tune.refit_default and default is not None and chosen is not None and default.number != chosen.number:
        default_result = refit(plan, default, source, suffix="default", refit_fit=refit_fit)
        if pick is not None and result is not None:  # the pick must also win at the refits' (full) budget
            values = plan.tune.objective.trial_values
            pick = confirm(pick, default, values(result.metrics["val"], plan.metrics),
                           values(default_result.metrics["val"], plan.metrics), plan.directions, plan.tune.refit_min_gain)
            if pick.trial is default:
                rejected = (chosen, result)
                chosen, result, default_result = default, default_result, None
    plots = write_plots(study, plan.metrics, plan.area / "plots", plan.tune.plots)
    summary = write_summary(study, plan, chosen, result, time.perf_counter() - started, default_result,
                            reason=None if pick is None else pick.reason, rejected=rejected)
    return TuneResult(study, plan, chosen, result, plots, summary, default_result, None if rejected is None else rejected[1])


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number,
            # a surplus trial ran nothing: its FAIL is not a failed configuration
            "role": "surplus" if t.user_attrs.get("surplus") else t.user_attrs.get(ROLE, "search"),
            "state": t.state.name,
            "values": t.values,
            "params": t.user_attrs.get("assignments", {}),
            "last_step": t.last_step,
            "seconds": round(t.duration.total_seconds(), 2) if t.duration else None,
            "retry_of": t.system_attrs.get("failed_trial"),  # set by RetryHeartbeatStaleTrialCallback
        })
    return rows


def default_vs_tuned(study: optuna.Study, chosen: FrozenTrial | None, result: FitResult | None,
                     default_result: FitResult | None) -> dict[str, Any] | None:
    """Validation (the trials' objective metrics) and test (the refits, each tested once) for the untuned
    pipeline and the chosen trial; None without a finished default trial."""
    default = default_trial(study)
    if default is None or chosen is None:
        return None
    same = default.number == chosen.number
    d_run = result if same else default_result

    def side(trial: FrozenTrial, run: FitResult | None) -> dict[str, Any]:
        return {"trial": trial.number, "values": trial.values, "params": trial.user_attrs.get("assignments"),
                "val": trial.user_attrs.get("val"), "test": None if run is None else run.metrics.get("test")}

    return {"default_is_best": same, "default": side(default, d_run), "tuned": side(chosen, result)}


def write_summary(study: optuna.Study, plan: StudyPlan, chosen: FrozenTrial | None, result: FitResult | None, seconds: float,
                  default_result: FitResult | None = None, reason: str | None = None,
                  rejected: tuple[FrozenTrial, FitResult] | None = None) -> Path:
    rows = trial_rows(study)
    front = pareto_front(study, plan) if len(plan.directions) > 1 and chosen is not None else []
    summary = {
        "study": plan.study_name,
        "storage": plan.storage_url if plan.storage_url.startswith("sqlite") else plan.storage_url.split("@")[-1],  # no password
        "objectives": dict(zip(plan.tune.objective.value_names(plan.metrics), plan.directions)),
        "states": {s.name: sum(r["state"] == s.name for r in rows) for s in TrialState},
        "worker_seconds": round(seconds, 1),
        "chosen_trial": None if chosen is None else {"number": chosen.number, "values": chosen.values, "params": chosen.user_attrs.get("assignments"), "val": chosen.user_attrs.get("val"), "reason": reason},
        "pareto_front": [{"number": t.number, "values": t.values, "params": t.user_attrs.get("assignments")} for t in front],
        "refit": None if result is None else {"run_dir": str(result.run_dir), "val": result.metrics["val"], "test": result.metrics.get("test")},
        "default_vs_tuned": default_vs_tuned(study, chosen, result, default_result),
        # the trials' pick whose refit lost to the default's refit on validation (its test read once, for the record)
        "rejected_refit": None if rejected is None else {"trial": rejected[0].number, "params": rejected[0].user_attrs.get("assignments"),
                                                         "run_dir": str(rejected[1].run_dir), "val": rejected[1].metrics["val"],
                                                         "test": rejected[1].metrics.get("test")},
        "default_outside_space": study.user_attrs.get("default_outside_space", []),
        "resumed_with_changes": study.user_attrs.get("resumed_with_changes", []),
        "trials": rows,
    }
    path = plan.area / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    with open(plan.area / "trials.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["number"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "values": json.dumps(r["values"]), "params": json.dumps(r["params"])})
    return path


def summary_table(result: TuneResult, top: int = 10) -> str:
    """The end-of-study table: trial counts, the best (or Pareto) trials, and the refit's metrics."""
    study, plan = result.study, result.plan
    rows = trial_rows(study)
    states = "  ".join(f"{s}={n}" for s, n in json.loads(result.summary_path.read_text())["states"].items() if n)
    names = plan.tune.objective.value_names(plan.metrics)
    lines = [f"study {plan.study_name} ({plan.storage_url.split('@')[-1]}): {states}"]
    if len(plan.directions) > 1:
        shown = pareto_front(study, plan) if result.chosen is not None else []
        lines.append(f"Pareto front ({len(shown)} trials):")
    else:
        sign = 1 if plan.directions[0] == "maximize" else -1
        shown = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -sign * t.values[0])[:top]
        lines.append(f"top {len(shown)} trials:")
    widths = [max(10, len(n)) for n in names]
    lines.append(f"{'trial':>6}  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths)) + "  params")
    for t in shown:
        params = " ".join(f"{k}={_short(v)}" for k, v in t.user_attrs.get("assignments", {}).items())
        mark = "*" if result.chosen is not None and t.number == result.chosen.number else " "
        lines.append(f"{mark}{t.number:>5}  " + "  ".join(f"{v:>{w}.4f}" for v, w in zip(t.values, widths)) + f"  {params}")
    if result.refit is not None:
        m = result.refit.metrics
        lines.append(f"refit of trial {result.chosen.number if result.chosen else '?'}: {result.refit.run_dir}")
        reason = json.loads(result.summary_path.read_text())["chosen_trial"].get("reason")
        if reason:
            lines.append(f"  why: {reason}")
        for split in ("val", "test"):
            shown_m = {k: v for k, v in m.get(split, {}).items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
            lines.append(f"  {split}: " + "  ".join(f"{k}={v:.4f}" for k, v in shown_m.items()))
    report = json.loads(result.summary_path.read_text()).get("default_vs_tuned")
    if report is not None:
        lines.append("default vs tuned (val: trial objective metrics; test: refits, each tested once):")
        for side in ("default", "tuned"):
            r = report[side]
            val = {k: v for k, v in (r["val"] or {}).items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
            test = {k: v for k, v in (r["test"] or {}).items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
            lines.append(f"  {side:>7} (trial {r['trial']}): val " + "  ".join(f"{k}={v:.4f}" for k, v in val.items())
                         + ("  | test " + "  ".join(f"{k}={v:.4f}" for k, v in test.items()) if test else ""))
    rejected = json.loads(result.summary_path.read_text()).get("rejected_refit")
    if rejected is not None:
        val = {k: v for k, v in rejected["val"].items() if k.endswith(("/auc", "/rmse", "/accuracy"))}
        lines.append(f"  rejected refit of trial {rejected['trial']} (lost to the default's refit on validation): val "
                     + "  ".join(f"{k}={v:.4f}" for k, v in val.items()))
    if result.plots:
        lines.append(f"plots: {', '.join(p.name for p in result.plots)} in {result.plots[0].parent}")
    lines.append(f"summary: {result.summary_path}  ({len(rows)} trials)")
    return "\n".join(lines)
