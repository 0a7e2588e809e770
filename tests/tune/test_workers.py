"""Many workers, one study: a real PostgreSQL server shared by two processes, and resume after kill -9.

The worker processes are forked from one pre-imported parent (:mod:`tests.support.cli_zygote`, one per
module): each is a process of its own (pid, connections, heartbeat thread, SIGKILL) running
``recsys-mtl tune``, without a fresh interpreter's seconds of imports each.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from recsys_mtl.data.sources import load_splits
from recsys_mtl.spec import load_pipeline
from recsys_mtl.tune import open_study, plan_study, run_workers
from tests.support.cli_zygote import ForkedCli, Zygote
from tests.support.paths import ROOT
from tests.support.tune import write_pipeline

SPACE = {"trainer.lr": {"type": "float", "low": 3.0e-3, "high": 3.0e-2, "log": True},
         "model.params.num_experts": {"type": "int", "low": 1, "high": 3}}


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (initdb + pg_ctl in a temp dir), removed afterwards."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server not installed (initdb/pg_ctl not found): apt-get install -y postgresql")
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2-binary not installed (pip install 'recsys-mtl[tune]')")
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: use the postgres (or nobody) account
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user)
        run_as = ["runuser", "-u", user, "--"]
    port = _free_port()
    data = root / "data"
    try:
        subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], check=True, capture_output=True, text=True)
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
             "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off", "start"],
            check=True, capture_output=True, text=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL cluster: {getattr(exc, 'stderr', '') or exc}")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE studies")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """The parent the workers fork from: it imports what ``tune`` runs once (asked for first: its imports
    run while the PostgreSQL cluster starts and the data is cached)."""
    # not the export's modules (CLI_MODULES): ``tune --no-refit`` never exports (~2.3 CPU s of onnx imports)
    parent = Zygote(ROOT, preload=("recsys_mtl.cli", "recsys_mtl.train.fit", "recsys_mtl.tune", "recsys_mtl.tune.study",
                                   "recsys_mtl.tune.plots"))
    yield parent
    parent.close()


def _worker(zygote: Zygote, path: Path, *args: str) -> ForkedCli:
    """``recsys-mtl tune path --no-refit *args`` in a process of its own, run in the pipeline's folder."""
    return zygote.run(["tune", str(path), "--no-refit", *args], path.parent, path.parent / "worker-logs")


def _output(worker: ForkedCli, timeout: float) -> str:
    out, err = worker.communicate(timeout=timeout)
    return (out + err).decode(errors="replace")


def _has_heartbeat(storage: optuna.storages.RDBStorage, trial_id: int) -> bool:
    """Whether the trial's heartbeat thread has written its row (Optuna fails only trials that have one)."""
    table = sqlalchemy.table("trial_heartbeats", sqlalchemy.column("trial_id"))
    with storage.engine.connect() as conn:
        return conn.execute(sqlalchemy.select(table.c.trial_id).where(table.c.trial_id == trial_id)).first() is not None


def _cache_data(path: Path) -> None:
    cfg, _ = load_pipeline(path)
    load_splits(cfg.data)  # generate the synthetic parquet once, before workers race to it


def _count(conn: sqlalchemy.Connection, query: sqlalchemy.TextClause) -> int:
    """``query``'s count in a transaction of its own: PostgreSQL keeps one snapshot of its activity
    statistics per transaction, so a second read in the same one would see the first's numbers."""
    try:
        return int(conn.execute(query).scalar_one())
    finally:
        conn.rollback()


@contextmanager
def _trials_held_until_all_wait(url: str, workers: list[ForkedCli], timeout: float = 300) -> Iterator[None]:
    """Hold Optuna's ``trials`` table locked while the block starts ``workers``, and until as many
    connections wait on a lock (each worker blocks before it can create, or even look for, a trial)
    or one of them has exited, so that no worker can start a trial before every worker is there to
    take one."""
    storage = optuna.storages.RDBStorage(url)  # Optuna's tables, made before any worker connects
    waiting = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    with storage.engine.connect() as holder, holder.begin():
        holder.execute(sqlalchemy.text("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE"))
        yield
        deadline = time.time() + timeout
        with storage.engine.connect() as watch:
            while _count(watch, waiting) < len(workers) and all(w.poll() is None for w in workers):
                assert time.time() < deadline, f"{len(workers)} workers never reached the study's trials within {timeout} s"
                time.sleep(0.05)
    storage.engine.dispose()


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(zygote: Zygote, tmp_path: Path, postgres_url: str) -> None:
    n = 4
    path = write_pipeline(tmp_path, {"n_trials": n, "space": SPACE, "trial_overrides": {"trainer.max_epochs": 1},
                                     "sampler": {"name": "random"}, "plots": "none"})
    _cache_data(path)
    workers: list[ForkedCli] = []
    with _trials_held_until_all_wait(postgres_url, workers):  # else the first worker up may run all n before the other starts
        workers += [_worker(zygote, path, "--storage", postgres_url, "--study", "shared") for _ in range(2)]
    outputs = [_output(w, timeout=400) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers) == len(trials)
    assert len({t.user_attrs["worker"] for t in finished}) == 2, outputs  # both processes ran trials


@pytest.mark.slow
def test_killed_worker_trial_is_failed_by_heartbeat_and_retried(zygote: Zygote, tmp_path: Path) -> None:
    """A worker killed mid-trial, and one killed right after ``ask`` (before its trial's heartbeat thread
    ran): the next worker fails both trials and retries each once; nothing finished is lost."""
    path = write_pipeline(tmp_path, {
        "n_trials": 3, "space": SPACE, "sampler": {"name": "random", "params": {"seed": 0}},
        # a trial is RUNNING for its whole fit (training, re-validation, calibration, curves): long enough to be
        # seen running at a 0.05 s poll and killed, on the default 1200 rows
        "trial_overrides": {"trainer.max_epochs": 2}, "heartbeat_interval": 1, "grace_period": 2, "plots": "none",
    })
    _cache_data(path)
    plan = plan_study(path)
    plan.area.mkdir(parents=True)  # the SQLite file's folder, so this test can watch the study
    storage = optuna.storages.RDBStorage(plan.storage_url)
    worker = _worker(zygote, path)
    killed: optuna.trial.FrozenTrial | None = None
    deadline = time.time() + 300
    try:
        while killed is None and time.time() < deadline and worker.poll() is None:
            time.sleep(0.05)
            try:
                trials = optuna.load_study(study_name=plan.study_name, storage=storage).get_trials(deepcopy=False)
            except KeyError:  # study not created yet
                continue
            # the trial's heartbeat is recorded as it starts (recsys_mtl.tune.heartbeat), a moment before its
            # objective sets "assignments": both are there once it is killed mid-fit
            running = [t for t in trials if t.state == TrialState.RUNNING and "assignments" in t.user_attrs
                       and _has_heartbeat(storage, t._trial_id)]
            if any(t.state == TrialState.COMPLETE for t in trials) and running:
                worker.send_signal(signal.SIGKILL)  # mid-trial, no chance to clean up
                worker.wait(timeout=60)
                killed = running[0]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=60)
    assert killed is not None, "the worker never reached a second trial"
    before = {t.number: t.values for t in optuna.load_study(study_name=plan.study_name, storage=storage).trials if t.state == TrialState.COMPLETE}
    # a worker that died as ask() returned: its trial is RUNNING and no heartbeat thread ever ran for it
    # (before recsys_mtl.tune.heartbeat it had no heartbeat row, was never stale and held a slot for ever)
    with pytest.warns(UserWarning, match="Heartbeat of storage is supposed to be used with Study.optimize"):
        orphan = open_study(plan).ask()  # as Study.optimize asks, without the heartbeat thread it starts next
    time.sleep(plan.tune.grace_period + 1)  # both dead workers' heartbeats are now stale

    study, _ = run_workers(plan)  # a new worker continues the same study from its storage
    trials = {t.number: t for t in study.trials}
    for dead in (killed.number, orphan.number):
        assert trials[dead].state == TrialState.FAIL, dead
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == dead]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, dead
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.user_attrs["assignments"] == killed.user_attrs["assignments"]  # same parameters
    assert {k: trials[k].values for k in before} == before  # nothing finished before the kill is lost
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 3


@pytest.mark.slow
def test_a_trial_started_after_the_last_slot_was_taken_steps_aside() -> None:
    """Two workers finishing together both pass MaxTrialsCallback; the later-numbered trial must not run."""
    from recsys_mtl.tune.study import SurplusTrial, _claim_slot, trial_rows

    study = optuna.create_study(storage="sqlite:///:memory:")
    for _ in range(2):
        study.tell(study.ask(), 0.5)  # two finished
    racing = [study.ask(), study.ask()]  # both workers saw 2 finished + 1 running < 4 and asked
    _claim_slot(racing[0], 4)  # trial 2: 2 earlier, runs
    _claim_slot(racing[1], 4)  # trial 3: 3 earlier (2 finished + trial 2 running), runs: exactly 4
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        _claim_slot(trial, 4)
        ran.append(trial.number)
        return 0.5

    study.optimize(objective, n_trials=5, catch=(SurplusTrial,))  # a third worker arriving late
    late = study.trials[-1]
    assert ran == [] and len(study.trials) == 5  # stopped after its one surplus trial, which did no work
    assert late.state == TrialState.FAIL and late.user_attrs["surplus"] is True
    assert [r["role"] for r in trial_rows(study)] == ["search"] * 4 + ["surplus"]  # trials.csv tells it apart
    _claim_slot(study.ask(), None)  # no target: never surplus
