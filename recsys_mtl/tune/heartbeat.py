"""An RDB storage whose trials have a heartbeat from the moment they run.

Optuna fails a dead worker's RUNNING trial once its heartbeat is older than the grace period, but
only trials with a heartbeat row: the row is first written by the trial's heartbeat thread, which
starts after ``ask`` (under load, after the objective has started). A worker killed in between left
a trial with no row: RUNNING for ever, holding one of the study's ``n_trials`` slots
(:func:`recsys_mtl.tune.study._claim_slot` counts running trials), so the study never finished.
Here the process that creates a running trial (or starts a queued one) records its first heartbeat
right away, before ``ask`` returns; from then on the usual staleness check applies.
"""

from __future__ import annotations

from typing import Sequence

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

#: Optuna (3.x to 5.x) creates trials in ``RDBStorage._create_new_trial``: ``create_new_trial`` calls
#: it, and so does the cache Optuna wraps every RDB storage of a study in (which never calls the
#: public method). Where a later Optuna lacks it, the public method is the hook (then a cached
#: study's trials get their first heartbeat from their thread, as in plain Optuna).
_CREATE_HOOK = hasattr(RDBStorage, "_create_new_trial")


class HeartbeatFromStartStorage(RDBStorage):
    """:class:`optuna.storages.RDBStorage` that records a trial's first heartbeat when it becomes RUNNING;
    without a heartbeat interval it is the plain storage."""

    if _CREATE_HOOK:
        def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
            trial = super()._create_new_trial(study_id, template_trial)
            if trial.state == TrialState.RUNNING:  # ask(); enqueued trials are WAITING, told ones finished
                self._first_heartbeat(trial._trial_id)
            return trial
    else:  # pragma: no cover - an Optuna without the private method
        def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
            trial_id = super().create_new_trial(study_id, template_trial)
            if template_trial is None or template_trial.state == TrialState.RUNNING:
                self._first_heartbeat(trial_id)
            return trial_id

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        started = super().set_trial_state_values(trial_id, state, values)
        if started and state == TrialState.RUNNING:  # a queued trial taken by this worker
            self._first_heartbeat(trial_id)
        return started

    def _first_heartbeat(self, trial_id: int) -> None:
        if self.get_heartbeat_interval() is not None:
            self.record_heartbeat(trial_id)
