"""A corpus of bad inputs to the CLI: specs, pipelines, data files, run folders, export folders.

Each case breaks one thing in a small valid workspace and expects exit code 2 with one error
line that names the file or field at fault, and no traceback. Cases that reach ``fit`` also
check that no run folder was left behind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl
import pytest
import torch
import yaml

from tests.support.bad_inputs import Workspace, build_templates, cli_error, trojan_checkpoint, with_column, workspace


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_templates(tmp_path_factory.mktemp("templates"))


@dataclass
class Case:
    id: str
    #: breaks something in the workspace and returns the CLI arguments
    setup: Callable[[Workspace], list[str]]
    #: substrings the error line must contain (file / field names and the reason)
    expect: tuple[str, ...]


def validate(ws: Workspace, *sets: str) -> list[str]:
    return ["validate", str(ws.pipeline), *[a for s in sets for a in ("--set", s)]]


def fit(ws: Workspace, *sets: str) -> list[str]:
    return ["fit", str(ws.pipeline), *[a for s in sets for a in ("--set", s)]]


def write(path: Path, text: str | bytes) -> Path:
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)  # type: ignore[operator]
    return path


def then(edit: Callable[[Workspace], object], args: Callable[[Workspace], list[str]] = validate) -> Callable[[Workspace], list[str]]:
    """Apply ``edit`` to the workspace, then run ``args`` (validate by default)."""
    def setup(ws: Workspace) -> list[str]:
        edit(ws)
        return args(ws)
    return setup


def spec(text: str | bytes | Callable[[str], str]) -> Callable[[Workspace], list[str]]:
    """validate, with the spec file replaced by ``text`` (or ``text(old spec)``)."""
    return then(lambda ws: write(ws.spec, text(ws.spec.read_text()) if callable(text) else text))


def pipeline(text: str | bytes | Callable[[str], str]) -> Callable[[Workspace], list[str]]:
    return then(lambda ws: write(ws.pipeline, text(ws.pipeline.read_text()) if callable(text) else text))


BOMB = "lol: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &a{i} [{', '.join([f'*a{i - 1}' if i > 1 else '*a'] * 10)}]\n" for i in range(1, 8)
)


def pipeline_bomb(section: str) -> Callable[[Workspace], list[str]]:
    body = "\n".join("  " + line for line in BOMB.splitlines())
    return pipeline(lambda old: old + f"{section}:\n{body}\n")


def run_file(name: str, content: str | bytes | Callable[[Path], None]) -> Callable[[Workspace], None]:
    def apply(ws: Workspace) -> None:
        path = ws.run / name
        content(path) if callable(content) else write(path, content)
    return apply


def on_run(command: str, *edits: Callable[[Workspace], None]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        for edit in edits:
            edit(ws)
        if command == "export":
            return ["export", str(ws.run), "--out", str(ws.root / "export")]
        return [command, str(ws.run)]
    return setup


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Workspace], None]:
    def apply(ws: Workspace) -> None:
        path = ws.run / name
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))
    return apply


def edit_run_pipeline(change: Callable[[dict], None]) -> Callable[[Workspace], None]:
    def apply(ws: Workspace) -> None:
        path = ws.run / "pipeline.yaml"
        raw = yaml.safe_load(path.read_text())
        change(raw)
        path.write_text(yaml.safe_dump(raw))
    return apply


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def resume_with(edit: Callable[[Workspace], None]) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        edit(ws)
        return [*fit(ws), "--resume", str(ws.run)]
    return setup


def data(change: Callable[[Workspace], None], *sets: str, command: Callable[..., list[str]] = fit) -> Callable[[Workspace], list[str]]:
    def setup(ws: Workspace) -> list[str]:
        change(ws)
        args = command(ws, *sets)
        return args + (["--data"] if command is validate else [])
    return setup


SPEC_CASES = [
    Case("spec-not-utf8", spec("name: s\xe9\n".encode("latin-1")),
         ("spec.yaml", "not UTF-8")),
    Case("spec-duplicate-key", spec(lambda old: old + "name: again\n"),
         ("spec.yaml (line", "'name' given twice")),
    Case("spec-alias-bomb", spec(BOMB), ("spec.yaml", "alias bomb")),
    Case("spec-recursive-alias", spec("a: &a [*a]\n"), ("spec.yaml (line 1)", "recursive")),
    Case("spec-too-large", spec(lambda old: old + "#" * (1 << 20)),
         ("spec.yaml", "MiB limit")),
    Case("spec-deep-nesting", spec("a: " + "[" * 200 + "]" * 200),
         ("spec.yaml (line 1)", "nested deeper")),
    Case("spec-huge-integer", spec("a: " + "9" * 5000), ("spec.yaml", "digits")),
    Case("spec-control-character", spec("name: \x07\n"), ("spec.yaml", "control characters")),
    Case("spec-empty", spec(""), ("spec.yaml: file is empty",)),
    Case("spec-top-level-list", spec("- a\n- b\n"), ("spec.yaml", "expected a mapping")),
    Case("spec-missing", lambda ws: validate(ws, "spec=nowhere.yaml"), ("nowhere.yaml: file not found",)),
    Case("spec-unknown-key", spec(lambda old: old + "colour: red\n"),
         ("spec.yaml", "colour", "unknown key")),
    Case("spec-label-as-feature", spec(lambda old: old.replace("name: num0", "name: label0")),
         ("spec.yaml", "label0")),
]

PIPELINE_CASES = [
    Case("pipeline-not-utf8", pipeline(b"name: \xff\xfe\n"), ("pipeline.yaml", "not UTF-8")),
    Case("pipeline-duplicate-section", pipeline(lambda old: old + "trainer: {max_epochs: 3}\n"),
         ("pipeline.yaml (line", "'trainer' given twice")),
    Case("pipeline-alias-bomb-export", pipeline_bomb("export"), ("pipeline.yaml", "alias bomb")),
    Case("pipeline-alias-bomb-tune", pipeline_bomb("tune"), ("pipeline.yaml", "alias bomb")),
    Case("pipeline-too-large", pipeline(lambda old: old + "#" * (1 << 20)),
         ("pipeline.yaml", "MiB limit")),
    Case("model-unknown-name", lambda ws: validate(ws, "model.name=mmeo"), ("pipeline.yaml", "model.name", "did you mean 'mmoe'")),
    Case("model-unknown-param", lambda ws: validate(ws, "model.params.num_expert=3"),
         ("pipeline.yaml", "model.params.num_expert", "did you mean 'num_experts'")),
    Case("model-bad-param-value", lambda ws: validate(ws, "model.params.num_experts=-1"), ("pipeline.yaml", "model.params.num_experts")),
    Case("model-constructor-check", lambda ws: validate(ws, "model.name=ple", "model.params={task_experts: 0, shared_experts: 0}"),
         ("pipeline.yaml", "model.params", "at least 1")),
    Case("balancing-unknown-name", lambda ws: validate(ws, "balancing.name=pcgard"), ("balancing.name", "did you mean 'pcgrad'")),
    Case("balancing-unknown-param", lambda ws: validate(ws, "balancing.name=dwa", "balancing.params.temprature=2"),
         ("balancing.params.temprature", "unknown parameter")),
    Case("balancing-unknown-task", lambda ws: validate(ws, "balancing.name=static", "balancing.params.weights={clicks: 1}"),
         ("balancing.params.weights", "clicks")),
    Case("devices-over-machine", lambda ws: validate(ws, "trainer.accelerator=cpu", "trainer.devices=100000"),
         ("trainer.devices", "100000", "CPU core")),
    Case("devices-zero", lambda ws: validate(ws, "trainer.devices=0"), ("trainer.devices", "0")),
    Case("devices-text", lambda ws: validate(ws, "trainer.devices=many"), ("trainer.devices", "'many'")),
    Case("devices-gpu-ids-on-cpu", lambda ws: validate(ws, "trainer.accelerator=cpu", "trainer.devices='0,1'"), ("trainer.devices", "GPU ids")),
    Case("precision-unknown", lambda ws: validate(ws, "trainer.precision=fp16"), ("trainer.precision", "'fp16'", "did you mean")),
    Case("accelerator-unknown", lambda ws: validate(ws, "trainer.accelerator=gpus"), ("trainer.accelerator", "'gpus'")),
    Case("strategy-unknown", lambda ws: validate(ws, "trainer.strategy=dpp"), ("trainer.strategy", "'dpp'", "did you mean 'ddp'")),
    Case("strategy-fsdp-on-cpu", lambda ws: validate(ws, "trainer.accelerator=cpu", "trainer.strategy=fsdp"), ("trainer", "fsdp", "GPU")),
    Case("monitor-not-validation", lambda ws: validate(ws, "trainer.monitor=train/loss"), ("pipeline.yaml", "trainer.monitor")),
    Case("override-without-value", lambda ws: validate(ws, "trainer.max_epochs"), ("override 'trainer.max_epochs'", "KEY.PATH=VALUE")),
    Case("override-duplicate-key", lambda ws: validate(ws, "trainer={patience: 1, patience: 2}"), ("override", "'patience' given twice")),
    Case("fit-bad-devices-writes-nothing", lambda ws: fit(ws, "trainer.accelerator=cpu", "trainer.devices=100000"),
         ("pipeline.yaml", "trainer.devices")),
    Case("tune-unknown-model", lambda ws: ["tune", str(ws.pipeline), "--set", "model.name=mmeo"], ("pipeline.yaml", "model.name")),
    Case("run-command-bad-precision", lambda ws: ["run", str(ws.pipeline), "--set", "trainer.precision=half"], ("trainer.precision",)),
    Case("fit-unknown-balancing-writes-nothing", lambda ws: fit(ws, "balancing.name=nope"), ("pipeline.yaml", "balancing.name")),
]

DATA_CASES = [
    Case("data-inf-train", data(lambda ws: with_column(ws.data, num0=pl.when(pl.int_range(pl.len()) == 5).then(math.inf).otherwise(pl.col("num0")))),
         ("column 'num0'", "infinite")),
    Case("data-minus-inf-validate", data(lambda ws: with_column(ws.data, num2=pl.lit(-math.inf)), command=validate), ("column 'num2'", "infinite")),
    Case("data-inf-as-text", data(lambda ws: with_column(ws.data, num1=pl.col("num1").cast(pl.String).fill_null("inf")), command=validate),
         ("column 'num1'", "infinite")),
    Case("data-missing-column", data(lambda ws: pl.read_parquet(ws.data).drop("cat0").write_parquet(ws.data), command=validate),
         ("'cat0'", "missing")),
    Case("data-not-numeric", data(lambda ws: with_column(ws.data, num0=pl.lit("abc")), command=validate), ("column 'num0'", "non-numeric")),
    Case("data-file-missing", data(lambda ws: ws.data.unlink()), ("data.parquet: file not found",)),
    Case("data-file-garbage", data(lambda ws: write(ws.data, b"PAR1 this is not parquet")), ("data.parquet", "cannot read as parquet")),
    Case("data-file-empty", data(lambda ws: write(ws.data, b""), command=validate), ("data.parquet",)),
    Case("data-unknown-extension", then(lambda ws: write(ws.data.with_name("data.xlsx"), "x"),
                                         lambda ws: [*validate(ws, "data.train=data.xlsx"), "--data"]), ("data.xlsx", "unknown format")),
    Case("data-label-not-binary", data(lambda ws: with_column(ws.data, label0=pl.lit(3))), ("task 'task0'", "0/1")),
]

RUN_CASES = [
    Case("run-trojan-export", on_run("export", lambda ws: trojan_checkpoint(ws.run / "checkpoints/best.ckpt", ws.root / "marker")),
         ("best.ckpt", "refused to load")),
    Case("run-trojan-extra-object-report", on_run("report", lambda ws: trojan_checkpoint(
        ws.run / "checkpoints/best.ckpt", ws.root / "marker", base=ws.run / "checkpoints/best.ckpt")), ("best.ckpt", "refused to load")),
    Case("run-checkpoint-garbage", on_run("export", run_file("checkpoints/best.ckpt", b"\x00garbage" * 10)), ("best.ckpt", "not a readable checkpoint")),
    Case("run-checkpoint-truncated", on_run("report", run_file("checkpoints/best.ckpt", truncate)), ("best.ckpt", "not a readable checkpoint")),
    Case("run-checkpoint-not-a-dict", on_run("export", run_file("checkpoints/best.ckpt", lambda p: torch.save([1, 2], p))),
         ("best.ckpt", "no 'state_dict'")),
    Case("run-checkpoint-non-tensor", on_run("export", run_file("checkpoints/best.ckpt", lambda p: torch.save({"state_dict": {"model.w": [1]}}, p))),
         ("best.ckpt", "'model.w' is not a tensor")),
    Case("run-checkpoint-missing", on_run("export", lambda ws: (ws.run / "checkpoints/best.ckpt").unlink()), ("checkpoints/best.ckpt is missing",)),
    Case("run-preprocessing-truncated", on_run("export", run_file("preprocessing.json", truncate)), ("preprocessing.json", "not valid JSON")),
    Case("run-preprocessing-wrong-type", on_run("report", edit_json("preprocessing.json", lambda s: s["tables"]["cat0"].update(vocab=[1, 2]))),
         ("preprocessing.json", "tables.cat0.vocab[0]")),
    Case("run-preprocessing-missing-table", on_run("export", edit_json("preprocessing.json", lambda s: s["tables"].pop("cat1"))),
         ("preprocessing.json", "'cat1'")),
    Case("run-preprocessing-nan-std", on_run("export", edit_json("preprocessing.json", lambda s: s["numeric"]["num0"].update(std=math.nan))),
         ("preprocessing.json", "numeric.num0.std")),
    Case("run-preprocessing-unknown-field", on_run("export", edit_json("preprocessing.json", lambda s: s["numeric"]["num0"].update(evil=1))),
         ("preprocessing.json", "numeric.num0.evil")),
    Case("run-spec-edited", on_run("export", run_file("spec.yaml", lambda p: write(p, p.read_text().replace("task1", "task9")))),
         ("preprocessing.json", "different spec")),
    Case("run-pipeline-size-mismatch", on_run("export", edit_run_pipeline(lambda r: r["model"]["params"].update(expert_hidden=[16]))),
         ("best.ckpt", "pipeline.yaml", "size mismatch")),
    Case("run-pipeline-other-model", on_run("report", edit_run_pipeline(lambda r: r.update(model={"name": "shared_bottom", "params": {}}))),
         ("best.ckpt", "pipeline.yaml", "does not match")),
    Case("run-pipeline-unknown-model", on_run("export", edit_run_pipeline(lambda r: r["model"].update(name="nope"))),
         ("pipeline.yaml", "model.name")),
    Case("run-pipeline-duplicate-key", on_run("export", run_file("pipeline.yaml", lambda p: write(p, p.read_text() + "name: twice\n"))),
         ("pipeline.yaml (line", "given twice")),
    Case("run-metrics-path-escape", on_run("export", run_file("metrics.json", json.dumps({"best_checkpoint": "../../../etc/passwd"}))),
         ("metrics.json", "best_checkpoint")),
    Case("run-metrics-wrong-type", on_run("report", run_file("metrics.json", json.dumps({"best_checkpoint": 3}))), ("metrics.json", "best_checkpoint")),
    Case("run-metrics-truncated", on_run("export", run_file("metrics.json", '{"best_checkpoint": "checkpoints/be')), ("metrics.json", "not valid JSON")),
    Case("run-folder-missing", lambda ws: ["export", str(ws.root / "no-such-run")], ("no-such-run", "pipeline.yaml is missing")),
    Case("resume-trojan-last", resume_with(lambda ws: trojan_checkpoint(ws.run / "checkpoints/last.ckpt", ws.root / "marker")),
         ("last.ckpt", "refused to load")),
    Case("resume-no-last", resume_with(lambda ws: None), ("no checkpoints/last.ckpt",)),
    Case("export-out-not-empty", lambda ws: ["export", str(ws.run), "--out", str(ws.run)], ("already exists",)),
]

def row(i: int, value: object, column: str) -> pl.Expr:
    return pl.when(pl.int_range(pl.len()) == i).then(pl.lit(value)).otherwise(pl.col(column))


TUNE_WD = "{space: {trainer.weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}}, enqueue: [{trainer.weight_decay: %s}]}"


def failed_run(ws: Workspace) -> None:
    (ws.run / "FAILED").write_text("NonFiniteLossError: training loss is not finite at step 6 (epoch 1) in task 'task0'\n")


# values at the edges of the types they are used in (issue 27): float64 -> float32, int -> int64
EDGE_CASES = [
    Case("data-1e300-train", data(lambda ws: with_column(ws.data, num0=row(5, 1e300, "num0"))),
         ("column 'num0'", "beyond float32's range", "first at row", "(1e+300)")),
    Case("data-minus-1e39-train", data(lambda ws: with_column(ws.data, num1=row(0, -1e39, "num1"))),
         ("column 'num1'", "beyond float32's range", "(-1e+39)")),
    Case("data-1e300-validate", data(lambda ws: with_column(ws.data, num2=row(9, 1e300, "num2")), command=validate),
         ("column 'num2'", "beyond float32's range", "(1e+300)")),
    Case("data-1e39-as-text", data(lambda ws: with_column(ws.data, num4=pl.col("num4").cast(pl.String).fill_null("1e39")),
                                   command=validate), ("column 'num4'", "beyond float32's range")),
    Case("data-1e300-after-log1p-still-too-big", then(
        lambda ws: (write(ws.spec, ws.spec.read_text().replace("name: num0", "name: num0\n  clip: {max: 1.0e+300}")),
                    with_column(ws.data, num0=row(2, 1e300, "num0"))), fit), ("column 'num0'", "beyond float32", "(1e+300)")),
    Case("pipeline-batch-size-beyond-int64", lambda ws: validate(ws, "trainer.batch_size=100000000000000000000"),
         ("pipeline.yaml", "trainer.batch_size", "int64")),
    Case("pipeline-seed-below-int64", lambda ws: validate(ws, "trainer.seed=-9223372036854775809"),
         ("pipeline.yaml", "trainer.seed", "int64")),
    Case("pipeline-max-epochs-2-to-the-64", lambda ws: fit(ws, "trainer.max_epochs=18446744073709551616"),
         ("trainer.max_epochs", "int64")),
    Case("model-param-beyond-int64", lambda ws: validate(ws, "model.params.num_experts=100000000000000000000000"),
         ("model.params.num_experts", "int64")),
    Case("spec-hash-buckets-beyond-int64", spec(lambda old: old.replace("name: cat0", "name: cat0\n  hash_buckets: 36893488147419103232")),
         ("spec.yaml", "hash_buckets", "int64")),
    Case("tune-enqueue-below-log-range", pipeline(lambda old: old + "tune: " + TUNE_WD % "0.0" + "\n"),
         ("pipeline.yaml", "tune.enqueue[0].trainer.weight_decay", "outside the search space", "log scale")),
    Case("tune-enqueue-above-range", pipeline(lambda old: old + "tune: " + TUNE_WD % "0.5" + "\n"),
         ("tune.enqueue[0].trainer.weight_decay", "0.5", "[1e-06, 0.01]")),
    Case("tune-enqueue-not-a-choice", pipeline(lambda old: old + "tune: {space: {trainer.batch_size: {type: categorical, choices: [32, 64]}}, "
                                                                 "enqueue: [{trainer.batch_size: 48}]}\n"),
         ("tune.enqueue[0].trainer.batch_size", "one of [32, 64]")),
    Case("run-preprocessing-mean-beyond-float32", on_run("export", edit_json("preprocessing.json", lambda s: s["numeric"]["num0"].update(mean=1e300))),
         ("preprocessing.json", "numeric.num0.mean", "float32")),
    Case("run-preprocessing-quantile-beyond-float32", on_run("report", edit_json(
        "preprocessing.json", lambda s: s["numeric"]["num1"]["quantiles"].__setitem__(-1, 1e39))),
         ("preprocessing.json", "numeric.num1.quantiles[64]", "float32")),
    Case("run-preprocessing-tiny-std-overflows-test-rows", on_run("export", edit_json(
        "preprocessing.json", lambda s: s["numeric"]["num1"].update(std=1e-300))),
         ("column 'num1'", "outside the range this model can use")),
    Case("run-failed-export", on_run("export", failed_run), ("the fit of this run failed", "NonFiniteLossError", "--resume")),
    Case("run-failed-report", on_run("report", failed_run), ("the fit of this run failed",)),
    Case("export-out-under-a-file", then(lambda ws: write(ws.root / "afile", "x"),
                                         lambda ws: ["export", str(ws.run), "--out", str(ws.root / "afile" / "e")]),
         ("afile/e: cannot be created", "afile is a file, not a folder")),
    Case("export-out-is-a-file", then(lambda ws: write(ws.root / "afile", "x"),
                                      lambda ws: ["export", str(ws.run), "--out", str(ws.root / "afile")]),
         ("afile: is a file",)),
    Case("resume-failed-run-bad-pipeline", resume_with(failed_run), ("last.ckpt",)),
]

CASES = SPEC_CASES + PIPELINE_CASES + DATA_CASES + RUN_CASES + EDGE_CASES


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len(EDGE_CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, templates: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(templates, tmp_path)
    argv = case.setup(ws)
    assert argv, "case setup returned no arguments"
    line = cli_error(argv, capsys)
    for part in case.expect:
        assert part in line, f"{part!r} not in {line!r}"
    assert not (ws.root / "marker").exists()  # no pickle payload ran
    assert not (ws.root / "ws" / "runs").exists()  # nothing reached the run folder stage
    assert not (ws.root / "export").exists()
