"""A progress line for long offline jobs: rows done, rows/s and time left, on stderr.

On a terminal the line is redrawn in place (at most every ``interval`` seconds); in a log (not a
terminal) a new line is written every ``log_interval`` seconds, so a CI log is not flooded.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts rows against ``total`` (None when unknown, e.g. CSV inputs) and draws the line."""

    def __init__(self, total: int | None, label: str = "scored", stream: TextIO | None = None, enabled: bool = True,
                 interval: float = 0.25, log_interval: float = 10.0):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.done = 0
        self.started = time.perf_counter()
        self._drawn = 0.0

    def line(self) -> str:
        took = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / took
        text = f"{self.label} {self.done:,}"
        if self.total:
            text += f"/{self.total:,} rows ({100 * self.done / self.total:5.1f}%)"
        else:
            text += " rows"
        text += f"  {rate:,.0f} rows/s  elapsed {_duration(took)}"
        if self.total and rate > 0:
            text += f"  ETA {_duration(max(self.total - self.done, 0) / rate)}"
        return text

    def add(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if self.enabled and now - self._drawn >= self.interval:
            self._drawn = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K" + end)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw("\n")
