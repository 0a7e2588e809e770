"""recsys_mtl/tune/gc_freeze.py: per-trial collections skip what existed before the study, and free
every cycle a trial leaves behind."""

from __future__ import annotations

import gc
import weakref
from typing import Iterator

import optuna
import pytest

from recsys_mtl.tune.gc_freeze import frozen_heap


class Node:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    """Only explicit collections run (each one a full walk here), so each check sees what they free.
    The session's own freeze (tests/conftest.py) is lifted for the test and made again after it."""
    session_frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()
    if session_frozen:
        gc.collect()
        gc.freeze()


def test_trial_cycles_are_freed_after_each_trial_and_older_objects_are_skipped(no_automatic_gc: None) -> None:
    waiting = weakref.ref(Node())  # garbage already at entry
    before = Node()
    older = weakref.ref(before)
    freed: list[bool] = []
    left: list[weakref.ref[Node]] = []

    def objective(trial: optuna.Trial) -> float:
        if left:  # the previous trial's cycle is gone: the collection after it freed it
            freed.append(left[-1]() is None)
        left.append(weakref.ref(Node()))
        return 0.5

    study = optuna.create_study()
    with frozen_heap():
        assert waiting() is None  # freed at entry, not frozen for the study
        assert gc.get_freeze_count() > 0
        assert not any(o is before for o in gc.get_objects())  # alive at entry: out of the collector's walk
        del before  # cyclic garbage among the frozen objects: kept until the block ends
        study.optimize(objective, n_trials=3, gc_after_trial=True)
        assert older() is not None
    assert freed == [True, True] and left[-1]() is None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert older() is None  # freed by the first collection after the block


def test_a_freeze_the_process_made_itself_is_left_alone(no_automatic_gc: None) -> None:
    mine = Node()
    gc.freeze()
    # by identity, not by gc.get_freeze_count(): other threads (tqdm's monitor, loggers) may free
    # frozen objects at any moment, which lowers the count without any unfreeze
    with frozen_heap():
        assert not any(o is mine for o in gc.get_objects())  # still frozen (get_objects skips the permanent generation)
        made_inside = Node()
    assert not any(o is mine for o in gc.get_objects())  # not undone: an unfreeze would put it back in the walk
    assert any(o is made_inside for o in gc.get_objects())  # and nothing was frozen on the way out
