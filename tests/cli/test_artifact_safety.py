"""Run folders are data: a pickle payload never runs, the selected checkpoint is the one loaded,
and relative or moved run folders train, resume, report and export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys_mtl.cli import main
from recsys_mtl.train.run_folder import load_run
from tests.support.bad_inputs import Workspace, build_templates, trojan_checkpoint, workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_templates(tmp_path_factory.mktemp("templates"))


@pytest.fixture
def ws(templates: tuple[Path, Path], tmp_path: Path) -> Workspace:
    return workspace(templates, tmp_path)


def test_the_payload_is_real(ws: Workspace) -> None:
    """Loaded the unsafe way, the test checkpoint does run its payload (so the tests below mean something)."""
    path, marker = ws.root / "trojan.ckpt", ws.root / "marker"
    trojan_checkpoint(path, marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("command", ["export", "report", "resume"])
def test_payload_in_a_checkpoint_never_runs(ws: Workspace, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    marker = ws.root / "marker"
    best = ws.run / "checkpoints" / "best.ckpt"
    if command == "resume":
        trojan_checkpoint(ws.run / "checkpoints" / "last.ckpt", marker, base=best)
        argv = ["fit", str(ws.pipeline), "--resume", str(ws.run)]
    else:
        trojan_checkpoint(best, marker, base=best)  # a valid checkpoint plus one extra object
        argv = [command, str(ws.run), *(["--out", str(ws.root / "export")] if command == "export" else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "checkpoints/" in err and "refused to load" in err
    assert not marker.exists()
    assert not (ws.root / "export").exists()


@pytest.mark.slow
def test_payload_never_runs_through_the_installed_entry_point(ws: Workspace) -> None:
    marker = ws.root / "marker"
    trojan_checkpoint(ws.run / "checkpoints" / "best.ckpt", marker)
    proc = subprocess.run([sys.executable, "-m", "recsys_mtl.cli", "export", str(ws.run), "--out", str(ws.root / "export")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "refused to load" in proc.stderr, proc.stderr
    assert not marker.exists()


def test_load_run_uses_the_checkpoint_the_run_selected(ws: Workspace) -> None:
    ckpt = ws.run / "checkpoints"
    (ckpt / "best.ckpt").rename(ckpt / "best-v1.ckpt")
    stale = torch.load(ckpt / "best-v1.ckpt", weights_only=True)
    stale["state_dict"] = {k: torch.zeros_like(v) for k, v in stale["state_dict"].items()}
    torch.save(stale, ckpt / "best.ckpt")  # what an older, unselected checkpoint would hold
    (ws.run / "metrics.json").write_text(json.dumps({"best_checkpoint": "checkpoints/best-v1.ckpt"}))
    run = load_run(ws.run)
    assert run.checkpoint == "checkpoints/best-v1.ckpt"
    selected = torch.load(ckpt / "best-v1.ckpt", weights_only=True)["state_dict"]
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, selected[f"model.{name}"]), name


def _fit(*args: str) -> int:
    sets = ["trainer.max_epochs={}", "trainer.patience=5", "trainer.batch_size=32", "trainer.monitor=val/loss", "trainer.mode=min"]
    epochs, *rest = args
    return main(["fit", "ws/pipeline.yaml", *[a for s in sets for a in ("--set", s.format(epochs))], *rest])


@pytest.mark.slow
def test_relative_runs_dir_resume_of_a_copied_folder_and_report(ws: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ws.root)
    assert _fit("1", "--runs-dir", "my-runs") == 0, capsys.readouterr().err
    (first,) = Path("my-runs").iterdir()
    before = json.loads((first / "metrics.json").read_text())
    assert before["best_checkpoint"] == "checkpoints/best.ckpt"

    # a copy elsewhere (the original stays): its resume must select within the copy, keeping the best score
    shutil.copytree(first, "moved")
    assert _fit("3", "--resume", "moved") == 0, capsys.readouterr().err
    after = json.loads(Path("moved/metrics.json").read_text())
    assert after["epochs_run"] == 3
    assert sorted(p.name for p in Path("moved/checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert after["monitor"]["best"] <= before["monitor"]["best"]  # mode min: never a worse selection
    assert load_run("moved").checkpoint == after["best_checkpoint"]

    assert main(["report", "moved"]) == 0, capsys.readouterr().err
    report = json.loads(Path("moved/report/diagnostics.json").read_text())
    assert report["checkpoint"] == after["best_checkpoint"]
