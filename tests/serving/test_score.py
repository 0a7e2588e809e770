"""``recsys-mtl score``: streamed batch scoring gives the HTTP server's scores; inputs are checked
before anything is scored; errors name file, row group and row; the output is written atomically
(a SIGKILLed run leaves no output, a rerun gives the complete one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from recsys_mtl.cli import main
from serving.app import ARROW_TYPE, create_app
from serving.batch_inputs import BatchInputError, Unit
from serving.batch_score import BatchScoreError, score, shares
from serving.predictor import Predictor
from tests.support.export import delimited, export_dir, held_out, separator_export_dir  # noqa: F401  (fixtures)
from tests.support.serving import BLOCKER, arrow_bytes


def rows(n: int = 600, seed: int = 7) -> pl.DataFrame:
    """Held-out synthetic rows (OOV values, nulls, empty lists mixed in) with a ``row_id``."""
    return held_out(n, seed).with_row_index("row_id")


def write(df: pl.DataFrame, path: Path, group: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, row_group_size=group)
    return path


def server_scores(export: Path, df: pl.DataFrame, tasks: list[str]) -> dict[str, np.ndarray]:
    """What the HTTP server answers for ``df`` sent as one Arrow request."""
    table = df.drop("row_id").to_arrow() if "row_id" in df.columns else df.to_arrow()
    names = Predictor(export, warmup=False).schema.names
    table = table.select([c for c in table.column_names if c in names])
    with TestClient(create_app(Predictor(export))) as client:
        resp = client.post("/predict", content=arrow_bytes(table), headers={"content-type": ARROW_TYPE})
    assert resp.status_code == 200, resp.text
    answer = pa.ipc.open_stream(resp.content).read_all()
    return {t: answer.column(t).to_numpy() for t in tasks}


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None once it is gone."""
    try:
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError, ValueError):
        return None
    return state, int(ppid)


def _running(pid: int | str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie only awaits its new parent


def children(pid: int) -> list[int]:
    """The running processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _stat(entry.name)
        if stat is not None and stat[1] == pid and _running(entry.name):
            found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    """Until none of ``pids`` runs."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        time.sleep(0.02)
    assert not pids, f"processes {pids} still run {timeout} s after their parent was killed"


def no_temporaries(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.glob(f".{out.name}*")]


def test_folder_of_parquet_scores_as_the_server(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    df = rows(600)
    write(df[:350], tmp_path / "in" / "a.parquet")
    write(df[350:], tmp_path / "in" / "sub" / "b.parquet", group=100)
    out = tmp_path / "scores.parquet"
    result = score(export_dir, [str(tmp_path / "in")], out, keep=["row_id", "cat0"], batch_rows=50, progress=False)
    got = pq.read_table(out)
    assert result.rows == 600 and result.files == 2
    assert got.column_names == ["row_id", "cat0", "task0", "task1"]
    assert got.column("row_id").to_pylist() == list(range(600))  # input order kept
    assert got.column("cat0").to_pylist() == df["cat0"].to_list()
    want = server_scores(export_dir, df, ["task0", "task1"])
    for t in ("task0", "task1"):
        assert got.schema.field(t).type == pa.float32()
        assert np.abs(got.column(t).to_numpy() - want[t]).max() <= 1e-6
    assert not list(tmp_path.glob(".scores.parquet*"))  # temporaries gone


@pytest.mark.slow
def test_workers_write_the_same_file_in_input_order(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    df = rows(700, seed=3)
    files = [write(df[i * 175:(i + 1) * 175], tmp_path / f"part-{i}.parquet", group=60) for i in range(4)]
    one = score(export_dir, [str(tmp_path / "part-*.parquet")], tmp_path / "one.parquet", keep=["row_id"], progress=False)
    two = score(export_dir, [str(f) for f in files], tmp_path / "two.parquet", keep=["row_id"], workers=2, progress=False)
    assert two.workers == 2 and one.rows == two.rows == 700
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "two.parquet"))


def test_shares_are_contiguous_balanced_and_never_empty() -> None:
    units = [Unit("f", "parquet", g, w) for g, w in enumerate([5, 5, 5, 5, 100, 5, 5, 5])]
    dealt = shares(units, 3)
    assert [u for s in dealt for u in s] == units and all(dealt)
    assert len(dealt) <= 3
    assert shares(units[:1], 4) == [units[:1]]


def test_tasks_like_the_server(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    inp = write(rows(100), tmp_path / "in.parquet")
    score(export_dir, [str(inp)], tmp_path / "t1.parquet", tasks=["task1"], progress=False)
    assert pq.read_table(tmp_path / "t1.parquet").column_names == ["task1"]
    with pytest.raises(BatchScoreError, match="unknown task 'nope'; this export scores task0, task1"):
        score(export_dir, [str(inp)], tmp_path / "t2.parquet", tasks=["nope"], progress=False)


@pytest.mark.slow
def test_csv_with_delimited_sequences_scores_as_the_server(tmp_path: Path, separator_export_dir: Path) -> None:  # noqa: F811
    df = delimited(held_out(300, seed=5))
    df.write_csv(tmp_path / "in.csv")
    out = tmp_path / "csv.parquet"
    score(separator_export_dir, [str(tmp_path / "in.csv")], out, batch_rows=64, progress=False)
    got = pq.read_table(out)
    want = server_scores(separator_export_dir, df, ["task0", "task1"])
    for t in ("task0", "task1"):
        assert np.abs(got.column(t).to_numpy() - want[t]).max() <= 1e-6


def test_missing_column_refused_before_scoring(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    df = rows(200)
    good = write(df, tmp_path / "a.parquet")
    bad = write(df.drop("cat3"), tmp_path / "b.parquet")
    out = tmp_path / "out.parquet"
    with pytest.raises(BatchInputError, match=rf"^{bad}: column 'cat3' is missing"):
        score(export_dir, [str(good), str(bad)], out, progress=False)
    no_temporaries(out)
    with pytest.raises(BatchInputError, match=rf"^{good}: column 'user' is missing"):
        score(export_dir, [str(good)], out, keep=["user"], progress=False)


@pytest.mark.slow
def test_bad_value_names_file_row_group_and_row(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    df = rows(600).with_columns(num0=pl.when(pl.col("row_id") == 300).then(float("inf")).otherwise(pl.col("num0")))
    inp = write(df, tmp_path / "in.parquet", group=128)
    out = tmp_path / "out.parquet"
    for workers in (1, 2):
        with pytest.raises(BatchScoreError) as err:
            score(export_dir, [str(inp)], out, batch_rows=30, workers=workers, progress=False)
        # row 300 = row group 2 (rows 256..383), row 44 within it
        assert str(err.value).startswith(f"{inp}, row group 2, row 44 (row 300 of the file): column 'num0': infinite")
        no_temporaries(out)


def test_corrupted_parquet_is_named_and_nothing_written(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    good = write(rows(300), tmp_path / "a.parquet")
    broken = tmp_path / "b.parquet"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: no footer
    out = tmp_path / "out.parquet"
    with pytest.raises(BatchInputError, match=rf"^{broken}: not a readable parquet file"):
        score(export_dir, [str(good), str(broken)], out, progress=False)
    no_temporaries(out)
    # footer intact, a data page overwritten: found while reading, still named, still nothing written
    paged = tmp_path / "c.parquet"
    rows(300).write_parquet(paged, row_group_size=300, compression="snappy")
    raw = bytearray(paged.read_bytes())
    meta = pq.ParquetFile(paged).metadata.row_group(0).column(3)
    start = meta.data_page_offset + 40
    raw[start:start + 64] = os.urandom(64)
    paged.write_bytes(bytes(raw))
    with pytest.raises((BatchScoreError, BatchInputError), match=rf"^{paged}"):
        score(export_dir, [str(good), str(paged)], out, progress=False)
    no_temporaries(out)


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    inp = write(rows(50), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"precious")
    assert main(["score", str(export_dir), str(inp), "--out", str(out), "--quiet"]) == 2
    assert out.read_bytes() == b"precious"
    assert main(["score", str(export_dir), str(inp), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert pq.read_table(out).num_rows == 50


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_leaves_no_output_and_a_rerun_completes(tmp_path: Path, export_dir: Path, workers: int) -> None:  # noqa: F811
    df = pl.concat([rows(2000, seed=s) for s in range(10)]).with_row_index("n")
    inp = write(df, tmp_path / "in.parquet", group=1000)
    out = tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "recsys_mtl.cli", "score", str(export_dir), str(inp), "--out", str(out),
           "--keep", "n", "--batch-rows", "50", "--workers", str(workers), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    partial = out.with_name(f".{out.name}.partial") if workers == 1 else out.with_name(f".{out.name}.part1.partial")
    deadline = time.time() + 60
    while not (partial.is_file() and partial.stat().st_size > 0) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed; make the input larger"
    time.sleep(0.3)
    workers_started = children(proc.pid)
    assert workers == 1 or len(workers_started) >= workers  # the share's partial file is a worker's
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing under the output name
    wait_gone(workers_started)  # orphaned workers notice their parent is gone and stop
    assert main(["score", str(export_dir), str(inp), "--out", str(out), "--keep", "n", "--quiet",
                 "--workers", str(workers)]) == 0
    got = pq.read_table(out)
    assert got.column("n").to_pylist() == list(range(df.height))
    ref = Predictor(export_dir, warmup=False).predict_table(df.drop("n", "row_id").to_arrow())
    assert np.abs(got.column("task0").to_numpy() - ref["task0"]).max() <= 1e-6
    assert [p.name for p in tmp_path.glob(".out.parquet*")] == []


@pytest.mark.slow
def test_scoring_core_runs_without_torch(tmp_path: Path, export_dir: Path) -> None:  # noqa: F811
    """serving/batch_score.py (and the Ray / Spark front ends' imports) need neither torch nor recsys_mtl."""
    inp = write(rows(100), tmp_path / "in.parquet")
    code = ("import sys; import serving.ray_score, serving.spark_score; from serving.batch_score import score; "
            f"r = score({str(export_dir)!r}, [{str(inp)!r}], {str(tmp_path / 'o.parquet')!r}, progress=False); "
            "assert not any(m.split('.')[0] in ('torch', 'recsys_mtl') for m in sys.modules); print(r.rows)")
    proc = subprocess.run([sys.executable, str(BLOCKER), "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "100"
