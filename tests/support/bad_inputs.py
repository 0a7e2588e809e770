"""Helpers for the bad-input tests: a small workspace (spec, pipeline, data), a run folder, a
checkpoint carrying a pickle payload, and the CLI called in-process with its one-line error."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
import yaml

from recsys_mtl.cli import main
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from tests.support.synthetic import synthetic_spec
from tests.support.export import make_run


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``. A safe loader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def trojan_checkpoint(path: Path, marker: Path, base: Path | None = None) -> None:
    """A checkpoint with a pickle payload; with ``base``, that valid checkpoint plus one extra object."""
    ckpt: dict[str, Any] = torch.load(base, weights_only=True) if base is not None else {"state_dict": {}, "epoch": 0}
    ckpt["extra"] = Payload(marker)
    torch.save(ckpt, path)


@dataclass
class Workspace:
    """A valid pipeline + spec + Parquet data (files data source) in ``root``, and a run folder."""

    root: Path
    pipeline: Path
    spec: Path
    data: Path
    run: Path

    def edit_pipeline(self, **sections: Any) -> Path:
        raw = yaml.safe_load(self.pipeline.read_text())
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key].update(value)
            else:
                raw[key] = value
        self.pipeline.write_text(yaml.safe_dump(raw, sort_keys=False))
        return self.pipeline


def build_templates(root: Path) -> tuple[Path, Path]:
    """A template workspace folder and a template run folder (built once per module)."""
    spec = synthetic_spec(2)
    df = generate(SyntheticConfig(rows=300, num_tasks=2, seed=3))
    ws = root / "ws"
    ws.mkdir()
    (ws / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    df.write_parquet(ws / "data.parquet")
    (ws / "pipeline.yaml").write_text(yaml.safe_dump({
        "name": "bad_inputs",
        "spec": "spec.yaml",
        "data": {"kind": "files", "train": "data.parquet"},
        "model": {"name": "mmoe", "params": {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}},
        "trainer": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "plots": False},  # no test here reads a picture
        "runs_dir": "runs",
    }, sort_keys=False))
    run = make_run(root / "runs", spec, df, params={"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]})
    return ws, run


def workspace(templates: tuple[Path, Path], tmp: Path) -> Workspace:
    ws = shutil.copytree(templates[0], tmp / "ws")
    run = shutil.copytree(templates[1], tmp / "run")
    return Workspace(tmp, ws / "pipeline.yaml", ws / "spec.yaml", ws / "data.parquet", run)


def with_column(path: Path, **exprs: pl.Expr) -> None:
    pl.read_parquet(path).with_columns(**exprs).write_parquet(path)


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; it must exit 2 with one ``error:`` line and no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]
