"""Render the current result tables of docs/benchmarks.md from docs/results/<topic>.json.

    python benchmarks/render_results.py            # rewrite every marked table in docs/benchmarks.md
    python benchmarks/render_results.py --check    # exit 1 (naming the topics) if the doc is out of date
    python benchmarks/render_results.py --import census_new < table.md   # a markdown table -> a JSON skeleton

docs/benchmarks.md holds the **current** numbers only. Each table sits between two marker
comments and is regenerated from one JSON file, so a rerun replaces a table instead of adding
another below it:

    <!-- results:census_paper -->
    (generated: the table, then where each row's numbers come from)
    <!-- /results:census_paper -->

The prose around the markers (what the table measures, how to read it) is written by hand.
``tests/docs/test_docs_results.py`` renders every topic and compares it with the doc, and checks that
every JSON names its commit, command, date and load.

A topic file ``docs/results/<topic>.json``::

    {
      "runs": [                                  # one or more measurements the rows come from
        {"id": "a",                              # only needed with several runs
         "commit": "1925e77",                    # the commit whose code produced the numbers
         "date": "2026-11-29 12:05-12:45 UTC",
         "load": "load average 7-12 on the 2 shared cores",
         "command": ["OMP_NUM_THREADS=1 python benchmarks/census_models.py --models mmoe --seeds 1 2 3"]}
      ],
      "columns": ["model", "income test AUC", "run"],
      "rows": [["MMoE", "0.9549 ± 0.0000", "a"]],
      "notes": ["optional lines printed under the table"]
    }

Cells are strings (printed as they are), integers (printed with thousands separators), floats
(printed with ``format(x, "g")``) or null (printed as an empty cell). With more than one run the
table needs a ``run`` column whose cells are run ids; with one run it may omit it.

**Adding or updating a topic** (e.g. from an engineer's ``docs/results_<branch>.md``):

1. ``python benchmarks/render_results.py --import <topic> < table.md`` writes
   ``docs/results/<topic>.json`` from a markdown table (first table on stdin) with placeholder
   run fields; fill in ``commit`` (``git log -S'<a number>' -- docs/`` finds the commit that first
   recorded it, or the commit the benchmark ran on), ``date``, ``load`` and ``command``. A rerun
   that supersedes a table replaces its rows and run; move the old table to docs/history.md.
2. For a new topic, put ``<!-- results:<topic> -->`` and ``<!-- /results:<topic> -->`` (two
   lines) where the table belongs in docs/benchmarks.md, with a sentence of context around it.
3. ``python benchmarks/render_results.py`` fills every marked table; commit the JSON and the doc.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "results"

#: fields every run must carry (non-empty)
RUN_FIELDS = ("commit", "date", "load", "command")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
MARKER = re.compile(r"^<!-- results:(?P<topic>[a-z0-9_]+) -->$")
PLACEHOLDER = "FILL IN"


class ResultsError(ValueError):
    """A topic file or the doc's markers are malformed (the message names the file and field)."""


@dataclass(frozen=True)
class Topic:
    """One docs/results/<name>.json, validated."""

    name: str
    runs: list[dict[str, Any]]
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str]


def _filled(value: Any) -> bool:
    """A run field that says something: a non-empty string, or a non-empty list of them, no placeholder."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v and v != PLACEHOLDER for v in value)
    return isinstance(value, str) and bool(value) and value != PLACEHOLDER


def load_topic(path: Path) -> Topic:
    """Read and check one topic file; raises :class:`ResultsError` naming ``path`` and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ResultsError(f"{path}: expected an object with runs, columns, rows")
    unknown = set(raw) - {"runs", "columns", "rows", "notes"}
    if unknown:
        raise ResultsError(f"{path}: unknown field(s) {sorted(unknown)}")
    runs, columns, rows = raw.get("runs"), raw.get("columns"), raw.get("rows")
    if not isinstance(runs, list) or not runs:
        raise ResultsError(f"{path}: 'runs' must be a non-empty list")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ResultsError(f"{path}: runs[{i}] must be an object")
        for field in RUN_FIELDS:
            if not _filled(run.get(field)):
                raise ResultsError(f"{path}: runs[{i}].{field} is missing or empty")
        if not isinstance(run["command"], list):
            raise ResultsError(f"{path}: runs[{i}].command must be a list of command lines")
        if not COMMIT.match(str(run["commit"])):
            raise ResultsError(f"{path}: runs[{i}].commit {run['commit']!r} is not a hex commit id")
        extra = set(run) - {"id", *RUN_FIELDS}
        if extra:
            raise ResultsError(f"{path}: runs[{i}] has unknown field(s) {sorted(extra)}")
    ids = [run.get("id") for run in runs]
    if len(runs) > 1 and (None in ids or len(set(ids)) != len(ids)):
        raise ResultsError(f"{path}: with several runs every run needs a distinct 'id'")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise ResultsError(f"{path}: 'columns' must be a non-empty list of names")
    if not isinstance(rows, list) or not rows:
        raise ResultsError(f"{path}: 'rows' must be a non-empty list")
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ResultsError(f"{path}: rows[{r}] must be a list of {len(columns)} cells (one per column)")
        for c, cell in enumerate(row):
            if cell is not None and not isinstance(cell, (str, int, float)):
                raise ResultsError(f"{path}: rows[{r}][{c}] ({columns[c]}) must be a string, number or null")
    if len(runs) > 1:
        if "run" not in columns:
            raise ResultsError(f"{path}: several runs but no 'run' column saying which row comes from which")
        k = columns.index("run")
        for r, row in enumerate(rows):
            if row[k] not in ids:
                raise ResultsError(f"{path}: rows[{r}].run {row[k]!r} is not one of the run ids {ids}")
    notes = raw.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ResultsError(f"{path}: 'notes' must be a list of strings")
    return Topic(path.stem, runs, columns, rows, notes)


def load_topics(folder: Path = RESULTS) -> dict[str, Topic]:
    """Every ``*.json`` in ``folder``, by topic name."""
    return {p.stem: load_topic(p) for p in sorted(folder.glob("*.json"))}


def _cell(value: Any) -> str:
    """One table cell as markdown (``|`` escaped so it cannot split the row)."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = format(value, "g")
    else:
        text = value
    return text.replace("|", "\\|")


def render_topic(topic: Topic) -> str:
    """The markdown between a topic's markers: table, notes, then each run's provenance."""
    lines = ["| " + " | ".join(_cell(c) for c in topic.columns) + " |",
             "|" + "---|" * len(topic.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in topic.rows]
    if topic.notes:
        lines.append("")
        lines += topic.notes
    for run in topic.runs:
        label = f"Run `{run['id']}`: measured" if len(topic.runs) > 1 else "Measured"
        lines += ["", f"{label} at commit `{run['commit']}`, {run['date']}; {run['load']}.", "", "```bash"]
        lines += run["command"]
        lines.append("```")
    return "\n".join(lines)


def render_doc(text: str, topics: dict[str, Topic], doc: Path = DOC) -> str:
    """``text`` with every marked block replaced by its topic's rendering.

    Raises :class:`ResultsError` for a marker without its closing marker or its JSON file, and
    for a topic file that no marker uses (a table nobody would see).
    """
    out: list[str] = []
    lines = text.split("\n")
    used: set[str] = set()
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        name = m["topic"]
        end = f"<!-- /results:{name} -->"
        try:
            j = lines.index(end, i)
        except ValueError:
            raise ResultsError(f"{doc}:{i}: '<!-- results:{name} -->' has no closing '{end}'") from None
        if name not in topics:
            raise ResultsError(f"{doc}:{i}: marker for topic {name!r} but no docs/results/{name}.json")
        if name in used:
            raise ResultsError(f"{doc}:{i}: topic {name!r} is marked twice")
        used.add(name)
        out += [render_topic(topics[name]), end]
        i = j + 1
    unused = sorted(set(topics) - used)
    if unused:
        raise ResultsError(f"{doc}: no '<!-- results:NAME -->' marker for docs/results/{{{', '.join(unused)}}}.json")
    return "\n".join(out)


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first markdown table in ``text``: (columns, rows of cell strings, ``**`` removed)."""
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    if len(block) < 3:
        raise ResultsError("no markdown table (header, separator, rows) found")

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        return [p.strip().replace("\\|", "|").replace("**", "") for p in parts]

    columns = cells(block[0])
    rows = [cells(line) for line in block[2:]]
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise ResultsError(f"table row {r + 1} has {len(row)} cells, the header {len(columns)}")
    return columns, rows


def skeleton(columns: list[str], rows: list[list[str]]) -> dict[str, Any]:
    """A topic file for ``rows`` whose run fields are placeholders that :func:`load_topic` refuses."""
    run = {"commit": PLACEHOLDER, "date": PLACEHOLDER, "load": PLACEHOLDER, "command": [PLACEHOLDER]}
    return {"runs": [run], "columns": columns, "rows": rows}


def write_topic(path: Path, data: dict[str, Any]) -> None:
    """One topic file, 2-space indented, one row per line (diffs stay readable)."""
    head = {k: v for k, v in data.items() if k != "rows"}
    text = json.dumps(head, ensure_ascii=False, indent=2)
    rows = ",\n".join("    " + json.dumps(row, ensure_ascii=False) for row in data["rows"])
    text = text[:-2] + ",\n  \"rows\": [\n" + rows + "\n  ]\n}\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if docs/benchmarks.md is out of date")
    ap.add_argument("--import", dest="import_topic", metavar="TOPIC",
                    help="write docs/results/TOPIC.json from a markdown table on stdin")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        if args.import_topic:
            target = args.results / f"{args.import_topic}.json"
            if target.exists():
                raise ResultsError(f"{target} exists; edit it instead")
            write_topic(target, skeleton(*parse_markdown_table(sys.stdin.read())))
            print(f"wrote {target}: fill in runs[0] (commit, date, load, command), then add its markers to {args.doc}")
            return 0
        text = args.doc.read_text(encoding="utf-8")
        new = render_doc(text, load_topics(args.results), args.doc)
    except ResultsError as exc:
        print(f"render_results: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.doc} is out of date: run python benchmarks/render_results.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.doc.write_text(new, encoding="utf-8")
        print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
