"""CLI processes forked from one pre-imported parent, for tests whose subject is a real process.

A fresh ``python -m recsys_mtl.cli`` spends ~4.5 CPU s importing torch, Lightning, polars and onnx
before its command starts. The fault tests (SIGKILL mid-write, a file-size limit as a full disk,
two fits at once) need a separate process, not that start-up each time: :class:`Zygote` runs this
module as one subprocess that imports once, then forks a child per :meth:`Zygote.run`. Each child
is a process of its own (pid, working folder, RLIMIT_FSIZE, exit status or killing signal) that
runs ``recsys_mtl.cli.main`` and exits with its return code after the interpreter's exit work
(atexit functions, flushed streams).
Its stdout / stderr go through pipes the parent copies into files, so a file-size limit on the
child never truncates them. The parent only imports (and builds the ONNX op registry, pure Python:
:func:`warm_export`) before forking: no query or tensor op has started a thread pool that a child
would inherit mid-use.

A fresh interpreter (the entry point, lazy imports) is tested by tests/cli/test_cli.py and
tests/cli/test_lazy_imports.py. The parent's CPU, its children's included, is counted when the
parent is reaped (:meth:`Zygote.close`).

Protocol: one JSON request per line on the parent's stdin (``argv``, ``cwd``, ``out``, ``err``,
``limit_bytes``) → ``{"pid": n}``; ``{"exited": n, "status": wait status}`` once child n has exited
and its output is in the files. The parent exits when its stdin closes and every child is done.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Sequence

#: the modules of the commands the tests run (fit, export), imported once before any fork
CLI_MODULES = ("recsys_mtl.cli", "recsys_mtl.train.fit", "recsys_mtl.export")
#: what the parent loads before forking: a module name, or ``module:function`` to import and call
PRELOAD = (*CLI_MODULES, "tests.support.cli_zygote:warm_export")
#: what an export imports on its first call in a process (torch.export, the ONNX exporter, onnxscript)
EXPORT_MODULES = ("torch.export._trace", "torch.onnx._internal.exporter._core", "torch._functorch.aot_autograd",
                  "torch.fx.experimental.symbolic_shapes", "torch._inductor.codecache", "onnxscript", "onnx_ir", "sympy",
                  "pandas", "pyarrow")


def warm_export() -> None:
    """In the parent: the first export's one-off work, done once for every child (~2 CPU s each):
    the exporter's modules and the ONNX op registry (:mod:`recsys_mtl.export.dynamo_export`).
    Imports and pure-Python tables only: no tensor op runs, no thread pool starts before a fork."""
    for module in EXPORT_MODULES:
        importlib.import_module(module)
    from recsys_mtl.export.dynamo_export import _registry, cached_registry_available
    from recsys_mtl.export.model_graph import OPSET

    if cached_registry_available():
        _registry(OPSET)


# ---------------------------------------------------------------------------------- test side
class Zygote:
    """The pre-imported parent process; :meth:`run` starts a CLI child."""

    def __init__(self, root: Path, preload: Sequence[str] = PRELOAD) -> None:
        """``preload``: what the parent loads before any fork (see :data:`PRELOAD`): the commands' modules."""
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.cli_zygote", *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, cwd=root, env=env)
        self._buffer = b""
        self._messages: list[dict[str, Any]] = []
        self.exited: dict[int, int] = {}

    def run(self, argv: list[str], cwd: Path, logs: Path, limit_bytes: int | None = None) -> "ForkedCli":
        """``recsys-mtl *argv`` in a forked child run in ``cwd``, stdout / stderr into ``logs``/{out,err}-<pid>."""
        logs.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.monotonic_ns()}"
        out, err = logs / f"out-{stamp}", logs / f"err-{stamp}"
        request = {"argv": argv, "cwd": str(cwd), "out": str(out), "err": str(err), "limit_bytes": limit_bytes}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            pids = [m for m in self._messages if "pid" in m]
            if pids:
                self._messages.remove(pids[0])
                return ForkedCli(self, pids[0]["pid"], out, err)
            self.pump(60.0)

    def pump(self, timeout: float) -> None:
        """Read the parent's messages for up to ``timeout`` seconds (returns at the first)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the CLI parent exited ({self.proc.wait()})")
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "exited" in message:
                self.exited[message["exited"]] = message["status"]
            else:
                self._messages.append(message)

    def close(self) -> None:
        """Stop the parent once its children are done, and reap it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=300)


@dataclass
class ForkedCli:
    """A CLI child: the part of :class:`subprocess.Popen` the fault tests use."""

    zygote: Zygote
    pid: int
    out: Path
    err: Path
    returncode: int | None = field(default=None)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.zygote.pump(0)
            if self.pid in self.zygote.exited:
                self.returncode = os.waitstatus_to_exitcode(self.zygote.exited.pop(self.pid))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never a reused pid
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"recsys-mtl (pid {self.pid})", timeout)
            self.zygote.pump(min(left, 0.05))
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float) -> tuple[bytes, bytes]:
        self.wait(timeout)
        return self.out.read_bytes(), self.err.read_bytes()

    def stderr_text(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


# ---------------------------------------------------------------------------------- parent side
@dataclass
class _Child:
    outputs: dict[int, BinaryIO]  # pipe read end → its file
    status: int | None = None


def _child(request: dict[str, Any], out_w: int, err_w: int) -> None:
    """In the forked child: the entry point's environment, then the command; never returns."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
    os.chdir(request["cwd"])
    if request["limit_bytes"] is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["limit_bytes"], request["limit_bytes"]))
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    sys.argv = ["recsys-mtl", *request["argv"]]
    from recsys_mtl.cli import main

    code = 1
    try:
        code = main(request["argv"])
    except SystemExit as exc:  # argparse's usage errors (and --help): as the interpreter reports them
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        # the interpreter's own exit work (atexit, flushed streams), then os._exit: C++ objects a
        # library created in the parent (a std::thread) must not be destroyed in a child that has
        # not got their threads (abort: "terminate called ... std::system_error")
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve(preload: Sequence[str]) -> None:
    for entry in preload:
        module, _, function = entry.partition(":")
        loaded = importlib.import_module(module)
        if function:
            getattr(loaded, function)()
    children: dict[int, _Child] = {}
    pending = b""
    stdin_open = True
    while stdin_open or children:
        pipes = {fd: child for child in children.values() for fd in child.outputs}
        ready, _, _ = select.select(([0] if stdin_open else []) + list(pipes), [], [], 0.02)
        for fd in ready:
            if fd == 0:
                chunk = os.read(0, 65536)
                stdin_open = bool(chunk)
                pending += chunk
                *requests, pending = pending.split(b"\n")
                for line in requests:
                    request = json.loads(line)
                    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
                    sys.stdout.flush()
                    pid = os.fork()
                    if pid == 0:
                        for fd_ in (out_r, err_r, *pipes):
                            os.close(fd_)
                        _child(request, out_w, err_w)
                    os.close(out_w)
                    os.close(err_w)
                    # unbuffered: a later child must not inherit (and flush again at its exit) bytes held here
                    children[pid] = _Child({out_r: open(request["out"], "wb", buffering=0),
                                            err_r: open(request["err"], "wb", buffering=0)})
                    print(json.dumps({"pid": pid}), flush=True)
            else:
                data = os.read(fd, 65536)
                child = pipes[fd]
                if data:
                    child.outputs[fd].write(data)
                else:
                    child.outputs.pop(fd).close()
                    os.close(fd)
        while any(c.status is None for c in children.values()):
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children[pid].status = status
        for pid in [p for p, c in children.items() if c.status is not None and not c.outputs]:
            print(json.dumps({"exited": pid, "status": children.pop(pid).status}), flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C goes to pytest, which closes this parent
    _serve(sys.argv[1:] or PRELOAD)
    # every child is done and reported: skip the interpreter's teardown of what the parent imported
    # (torch, Lightning, the ONNX exporter: ~1.7 s at each module's end, with nothing to clean up)
    sys.stdout.flush()
    os._exit(0)
