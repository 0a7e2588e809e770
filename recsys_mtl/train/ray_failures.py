"""The record of a Ray fit's worker failures (``restarts.json``) and its one-line descriptions.

:class:`FailureLog` runs on Ray Train's controller (an actor process of its own), which imports this
module to unpickle it: so it imports neither Lightning nor the library's fit (seconds of start-up for
every Ray fit's controller); :mod:`recsys_mtl.train.ray_fit` is the rest, run by the driver and workers.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from recsys_mtl.artifacts import write_atomic

#: the run folder's record of worker failures and restarts (only written when a worker failed)
RESTARTS_FILE = "restarts.json"


def restarts(run_dir: Path) -> list[dict[str, Any]]:
    """The failures recorded in ``run_dir/restarts.json`` ([] when no worker failed)."""
    path = Path(run_dir) / RESTARTS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def describe_failure(rank: int, exc: BaseException) -> dict[str, Any]:
    """One worker's failure as data: its rank, whether its process died, where, and what happened.

    A dead worker reaches the controller as a failed health check wrapping Ray's ``ActorDiedError``
    (whose text holds the pid, the node and Ray's exit detail); a worker that raised, as its own
    exception (a ``RayTaskError`` whose ``cause`` is the original).
    """
    from ray.exceptions import RayActorError

    cause: BaseException = getattr(exc, "health_check_failure", None) or exc
    if isinstance(cause, RayActorError):
        text = str(cause)
        pid, ip = re.search(r"\bpid: (\d+)", text), re.search(r"\bip: (\S+)", text)
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        detail = re.search(r"Worker exit detail: (.+?\.)(?:\s|$)", text)
        where = f"pid {pid.group(1)}" if pid else "its process"
        what = (f"the worker process died ({where}{f' on {ip.group(1)}' if ip else ''}; Ray: "
                f"{exit_type.group(1) if exit_type else type(cause).__name__}{f', {detail.group(1)}' if detail else ''})")
        return {"worker_rank": rank, "died": True, "error": type(cause).__name__, "what": what, "node_ip": ip.group(1) if ip else None}
    cause = getattr(cause, "cause", None) or cause  # RayTaskError wraps the worker's own exception
    return {"worker_rank": rank, "died": False, "error": type(cause).__name__,
            "what": f"raised {type(cause).__name__}: {first_line(cause)}", "node_ip": None}


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The error's own line of ``exc``'s text (at most ``limit`` characters)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # a RayTaskError's text starts with the traceback header; the error itself is the last line
    line = lines[-1] if lines and lines[0].startswith(("ray::", "Traceback")) else (lines[0] if lines else "")
    return line[:limit]


def _import_user_callback() -> type:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")  # before ray.train's first import (see ray_fit._import_ray)
    try:
        from ray.train import UserCallback
    except ImportError:  # ray missing: this module still imports; ray_fit says what to install
        return object
    return UserCallback  # type: ignore[no-any-return]


class FailureLog(_import_user_callback()):  # type: ignore[misc]
    """Ray Train controller callback: every worker-group failure appended to ``restarts.json``.

    Runs on Ray's controller (an actor), so it records in the run folder rather than in memory;
    the resumed rank 0 adds the checkpoint it resumed from (:func:`_note_resume`).
    """

    def __init__(self, run_dir: str, max_failures: int) -> None:
        self.run_dir = Path(run_dir)
        self.max_failures = max_failures

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        if not self.run_dir.is_dir():  # failed before any worker created the folder: nothing to resume
            return
        records = restarts(self.run_dir)
        # the dead workers first: the others' errors (a closed gloo connection) follow from them
        failures = sorted((describe_failure(rank, exc) for rank, exc in worker_exceptions.items()),
                          key=lambda f: (not f["died"], f["worker_rank"]))
        records.append({"attempt": len(records) + 1, "max_failures": self.max_failures, "workers": failures})
        write_atomic(self.run_dir / RESTARTS_FILE, json.dumps(records, indent=1))


def format_restart(record: dict[str, Any]) -> str:
    """One line per recorded failure, for the CLI."""
    workers = "; ".join(f"worker {w['worker_rank']}: {w['what']}" for w in record["workers"])
    resumed = record.get("resumed_from")
    then = (f"the workers restarted from {resumed['checkpoint']} (saved at epoch {resumed['epoch']}, step {resumed['global_step']})"
            if resumed else "no restart from a checkpoint (none saved yet, or no retries left)")
    return f"Ray fit failure {record['attempt']} (of at most {record['max_failures']} recovered): {workers}; {then}"
