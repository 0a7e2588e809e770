"""The README's code blocks work: Python blocks run, shell blocks name real verbs, options and files.

- every ```python block runs in a fresh interpreter, in a folder holding ``exports/my_run`` (a
  small synthetic export, built once per session by ``tests/support/export.py``) and
  ``new.parquet`` (raw rows for it), the two paths the README's example names;
- every ``recsys-mtl`` / ``recsys-mtl-serve`` command in a ```bash block uses a verb and options its
  parser has, and a command on a pipeline file of this repository passes ``recsys-mtl validate``
  with the same ``--set`` overrides;
- every ``recsys-mtl <verb>`` in the text is a verb, and every ``pipelines/``, ``feature_specs/``
  or ``docs/`` path it names exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_mtl import cli
from serving import cli as serving_cli
from tests.support.export import export_dir, held_out  # noqa: F401  (export_dir is a fixture)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PIPELINE_VERBS = {"fit", "validate", "tune", "run", "baseline"}


def blocks(text: str, language: str) -> list[str]:
    """Bodies of the fenced code blocks of ``language`` in ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def commands(block: str) -> list[list[str]]:
    """Each simple command of a shell block as tokens: continuations joined, comments dropped,
    split at ``&&`` / ``||`` / ``;`` / ``|``; optional-argument brackets (``[--workers 2]``) removed."""
    out: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        tokens = [t.strip("[]") for t in shlex.split(line, comments=True)]
        current: list[str] = []
        for token in tokens + ["&&"]:
            if token in {"&&", "||", ";", "|", ">"}:
                if current:
                    out.append(current)
                current = [] if token != ">" else ["<redirect>"]
            elif current != ["<redirect>"]:
                current.append(token)
    return [c for c in out if c and c != ["<redirect>"]]


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("recsys-mtl has no sub-commands")


README_TEXT = README.read_text(encoding="utf-8")
VERBS = subparsers(cli.build_parser())
SHELL = [c for block in blocks(README_TEXT, "bash") for c in commands(block)]
OURS = [c for c in SHELL if Path(c[0]).name in {"recsys-mtl", "recsys-mtl-serve"}]


def test_the_readme_has_examples_to_check() -> None:
    assert blocks(README_TEXT, "python"), "README.md has no ```python block"
    assert len(OURS) >= 10, OURS


@pytest.mark.parametrize("command", OURS, ids=[" ".join(c)[:60] for c in OURS])
def test_shell_command_uses_real_verbs_and_options(command: list[str]) -> None:
    if Path(command[0]).name == "recsys-mtl-serve":
        parser, args = serving_cli.build_parser(), command[1:]
    else:
        assert len(command) > 1 and command[1] in VERBS, f"README: 'recsys-mtl {command[1:2]}' is not a verb ({sorted(VERBS)})"
        parser, args = VERBS[command[1]], command[2:]
    known = options_of(parser) | options_of(cli.build_parser())
    for token in args:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"README: {' '.join(command)}: no option {token}"


def _validate_args(command: list[str]) -> list[str] | None:
    """``validate`` arguments for a README command on one of this repository's pipelines, else None."""
    if Path(command[0]).name != "recsys-mtl" or command[1] not in PIPELINE_VERBS or len(command) < 3:
        return None
    pipeline = command[2]
    if not (ROOT / pipeline).is_file():
        return None
    sets = [arg for i, arg in enumerate(command) if i > 0 and command[i - 1] == "--set"]
    return ["validate", str(ROOT / pipeline), *[x for s in sets for x in ("--set", s)]]


VALIDATE = [a for c in OURS if (a := _validate_args(c)) is not None]


@pytest.mark.parametrize("args", VALIDATE, ids=[Path(a[1]).name + " " + " ".join(a[2:]) for a in VALIDATE])
def test_pipeline_commands_validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(args) == 0, capsys.readouterr().err


def test_every_named_verb_and_path_exists() -> None:
    for verb in re.findall(r"recsys-mtl\s+([a-z][a-z-]*)", README_TEXT):
        assert verb in VERBS, f"README names 'recsys-mtl {verb}', which is not a verb ({sorted(VERBS)})"
    paths = set(re.findall(r"(?<![\w/.])((?:pipelines|feature_specs|docs)/[\w./-]+\.(?:yaml|md))", README_TEXT))
    assert paths, "README names no pipeline, spec or doc file"
    for path in sorted(paths):
        assert (ROOT / path).is_file(), f"README names {path}, which does not exist"


def test_commands_parser_splits_chains_and_drops_comments() -> None:
    block = "a --x 1 && recsys-mtl fit p.yaml \\\n  --set k=v   # comment\nrecsys-mtl list --params > out.md\nb [--workers 2]\n"
    assert commands(block) == [["a", "--x", "1"], ["recsys-mtl", "fit", "p.yaml", "--set", "k=v"],
                               ["recsys-mtl", "list", "--params"], ["b", "--workers", "2"]]


@pytest.fixture(scope="module")
def example_folder(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The paths the README's Python example names: an export and a Parquet file of raw rows."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "exports").mkdir()
    (folder / "exports" / "my_run").symlink_to(export_dir, target_is_directory=True)
    held_out(50).write_parquet(folder / "new.parquet")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks(README_TEXT, "python"))))
def test_python_block_runs(index: int, example_folder: Path) -> None:
    code = blocks(README_TEXT, "python")[index]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=example_folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README python block {index} failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
