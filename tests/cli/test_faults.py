"""Faults mid-write, each tried for real in a subprocess: a fit killed with SIGKILL then resumed,
a file-size limit (as a full disk) during checkpointing and export, an export killed while writing,
the server sent SIGTERM with requests in flight, and two fits started at once into one runs folder.

The CLI processes are forked from one pre-imported parent (:mod:`tests.support.cli_zygote`): each
is a process of its own (killed, limited, run side by side), without a fresh interpreter's ~4.5 CPU s
of imports each."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from recsys_mtl.artifacts import load_checkpoint
from recsys_mtl.cli import main
from recsys_mtl.data.sources import data_source
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.train.run_folder import FAILED_MARKER, load_run
from serving.metadata import load_metadata
from tests.support.bad_inputs import Workspace, build_templates, workspace
from tests.support.cli_zygote import ForkedCli, Zygote
from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import start_server

ROOT = Path(__file__).resolve().parents[2]
#: larger than pipeline.yaml, spec.yaml, preprocessing.json and the logs; smaller than a checkpoint or model.onnx
FILE_LIMIT = 30_000


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_templates(tmp_path_factory.mktemp("fault-templates"))


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """The CLI parent; the tests ask for it first, so its imports run while the templates' run is fitted."""
    parent = Zygote(ROOT)
    yield parent
    parent.close()


def cli(ws: Workspace, zygote: Zygote, *args: str, limit_bytes: int | None = None) -> ForkedCli:
    """``recsys-mtl *args`` in a process of its own run in the workspace (its relative ``runs``
    folder), with ``limit_bytes``: RLIMIT_FSIZE, as a full disk would."""
    return zygote.run(list(args), ws.pipeline.parent, ws.root / "cli-logs", limit_bytes=limit_bytes)


def wait_for(check: Callable[[], bool], proc: ForkedCli, timeout: float = 240, poll: float = 0.05) -> None:
    deadline = time.time() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} first: {proc.stderr_text()[-2000:]}")
        if time.time() > deadline:
            proc.send_signal(signal.SIGKILL)
            raise AssertionError("timed out")
        time.sleep(poll)


def one_error_line(proc: ForkedCli, timeout: float = 240) -> str:
    _, err = proc.communicate(timeout=timeout)
    text = err.decode()
    assert proc.returncode == 2 and "Traceback" not in text, text[-3000:]
    (line,) = [ln for ln in text.splitlines() if ln.startswith("error:")]
    return line


def bigger_fit(ws: Workspace, epochs: int) -> None:
    """1000 rows in batches of 16 (~45 steps an epoch): epochs long enough to be killed in one, and
    few steps left for the in-process resume to train (the epochs after the kill); no pictures (the
    resume's claims are its checkpoint, epochs and metrics)."""
    generate(SyntheticConfig(rows=1000, num_tasks=2, seed=3)).write_parquet(ws.data)
    ws.edit_pipeline(trainer={"max_epochs": epochs, "batch_size": 16, "patience": 10, "plots": False})


def own_cache(ws: Workspace) -> Path:
    """Point the workspace's run folder at a data cache of its own (the template's is shared)."""
    path = ws.run / "pipeline.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["data"]["cache_dir"] = str(ws.root / "cache")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return ws.root / "cache"


def the_run(ws: Workspace) -> Path:
    (run,) = (ws.root / "ws" / "runs").iterdir()
    return run


@pytest.mark.slow
def test_fit_killed_mid_epoch_resumes_and_loses_at_most_the_epoch_in_progress(
        zygote: Zygote, templates: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(templates, tmp_path)
    epochs = 4  # the kill lands ~0.25 s after the first epoch's checkpoint: 3 more epochs cannot end first (~0.35 s each)
    bigger_fit(ws, epochs=epochs)
    proc = cli(ws, zygote, "fit", str(ws.pipeline))
    last = lambda: next((ws.root / "ws" / "runs").glob("*/checkpoints/last.ckpt"), None)  # noqa: E731
    wait_for(lambda: (ws.root / "ws" / "runs").is_dir() and last() is not None, proc)
    time.sleep(0.2)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run = the_run(ws)
    assert not (run / "metrics.json").exists()
    saved = load_checkpoint(run / "checkpoints" / "last.ckpt")  # whole: the save is atomic
    done_epochs = saved["epoch"] + 1
    assert done_epochs < epochs, "killed after the last epoch: nothing left to resume"
    assert not list(run.glob("**/*.tmp"))

    assert main(["fit", str(ws.pipeline), "--resume", str(run)]) == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    per_epoch = metrics["split_sizes"]["train"]
    # the resumed process trained only the epochs the checkpoint had not recorded
    assert metrics["train_rows"] == (epochs - done_epochs) * per_epoch
    assert metrics["epochs_run"] == epochs
    load_run(run)


@pytest.mark.slow
def test_checkpoint_write_that_fails_is_a_clear_error_and_keeps_no_partial_file(zygote: Zygote, templates: tuple[Path, Path],
                                                                                  tmp_path: Path) -> None:
    ws = workspace(templates, tmp_path)
    line = one_error_line(cli(ws, zygote, "fit", str(ws.pipeline), limit_bytes=FILE_LIMIT))
    assert "cannot write" in line and ".ckpt" in line and "File too large" in line, line
    run = the_run(ws)
    assert (run / FAILED_MARKER).is_file() and not (run / "metrics.json").exists()
    assert not list(run.glob("checkpoints/*"))  # no partial checkpoint, no temporary file
    with pytest.raises(Exception, match="the fit of this run failed"):
        load_run(run)


@pytest.mark.slow
def test_export_write_that_fails_leaves_no_folder_and_the_run_intact(zygote: Zygote, templates: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    ws = workspace(templates, tmp_path)
    own_cache(ws)
    data_source(load_run(ws.run).cfg.data).test()  # the run's synthetic data cache: only the export is left to write
    before = {p.name: p.read_bytes() for p in ws.run.rglob("*") if p.is_file()}
    out = ws.root / "exports" / "e1"
    line = one_error_line(cli(ws, zygote, "export", str(ws.run), "--out", str(out), limit_bytes=FILE_LIMIT))
    assert str(out) in line and "cannot write" in line and "File too large" in line, line
    assert not out.exists() and not list(out.parent.iterdir())  # no partial folder, no staging left behind
    assert {p.name: p.read_bytes() for p in ws.run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_data_cache_write_that_fails_is_a_clear_error(zygote: Zygote, templates: tuple[Path, Path], tmp_path: Path) -> None:
    ws = workspace(templates, tmp_path)
    cache = own_cache(ws)
    line = one_error_line(cli(ws, zygote, "export", str(ws.run), "--out", str(ws.root / "e"), limit_bytes=FILE_LIMIT))
    assert "cannot write the synthetic data cache" in line and "File too large" in line, line
    assert not list(cache.glob("*")) and not (ws.root / "e").exists()


@pytest.mark.slow
def test_export_killed_mid_write_leaves_nothing_a_server_would_load(
        zygote: Zygote, templates: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(templates, tmp_path)
    out = ws.root / "exports" / "e1"
    out.parent.mkdir()
    # the int8 and fp16 variants are written after model.onnx: a wide window to kill it in
    proc = cli(ws, zygote, "export", str(ws.run), "--out", str(out), "--int8", "--fp16")
    wait_for(lambda: any(out.parent.glob(".e1-*/out/model.onnx")), proc, poll=0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    with pytest.raises(Exception, match="not an export folder"):
        load_metadata(out)
    assert main(["export", str(ws.run), "--out", str(out)]) == 0, capsys.readouterr().err  # the leftover does not block
    load_metadata(out)


@pytest.mark.slow
def test_two_fits_at_once_write_two_complete_run_folders(zygote: Zygote, templates: tuple[Path, Path], tmp_path: Path) -> None:
    ws = workspace(templates, tmp_path)
    procs = [cli(ws, zygote, "fit", str(ws.pipeline)) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    runs = sorted((ws.root / "ws" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "metrics.json").is_file() and not (run / FAILED_MARKER).exists()
        assert yaml.safe_load((run / "pipeline.yaml").read_text())["name"] == "bad_inputs"
        load_run(run)


@pytest.mark.slow
def test_server_sigterm_answers_every_request_in_flight_then_exits_cleanly(export_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The server's graceful shutdown (the one test of it: tests/serving/test_http.py starts none)."""
    with (tmp_path / "server.log").open("wb") as log:
        # a long batching wait holds the requests inside the server when the signal arrives (1.2 s after
        # it, even on a loaded machine)
        proc, port = start_server(export_dir, log, "--max-wait-ms", "1500", "--max-batch", "10000")
        body = json.dumps([good_row(i) for i in range(20)])
        results: list[tuple[int, dict, float]] = []  # type: ignore[type-arg]
        sent = threading.Barrier(9)

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            sent.wait()
            resp = conn.getresponse()
            results.append((resp.status, json.loads(resp.read()), time.monotonic()))
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        sent.wait()
        time.sleep(0.3)  # the requests have been read: they wait in the micro-batcher
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        # after the graceful shutdown uvicorn re-raises the captured SIGTERM with its default action, so
        # a supervisor sees "terminated by SIGTERM" as asked, not a crash (the log says it finished)
        assert proc.wait(timeout=60) == -signal.SIGTERM
    text = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in text and "Finished server process" in text and "Traceback" not in text
    assert len(results) == 8 and all(status == 200 and body["rows"] == 20 for status, body, _ in results), results
    assert all(done > signalled for _, _, done in results)  # every answer came after the signal: they were in flight
    with pytest.raises(OSError):  # the listening socket is gone
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/health")
