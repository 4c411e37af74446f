"""Progress of long work, on a terminal and off it: the one progress reporter of the package.

On a terminal (or in Jupyter) it is a rich progress bar. When standard output is not a terminal —
a CI log, ``trustfolio train … | tee train.log``, a file — a bar would print nothing until the end,
so it writes plain lines instead, one each time another `every_percent` of the work is done or
`every_seconds` have passed since the last line, and one at the end::

    sac fit: 40/200 steps (20%), 0:01:12 elapsed, ~0:04:48 left

The training harness (`trustfolio.agents.harness`) and the experiment runner (`trustfolio.runner`)
report through it; `note` prints a one-off line (e.g. "resumed from step 40 of 200") the same way.
Progress goes to standard output, where the results are printed, so a ``| tee`` log holds both.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

EVERY_PERCENT = 10.0
EVERY_SECONDS = 30.0


def interactive() -> bool:
    """Whether standard output is a terminal (or a Jupyter notebook) that can redraw a bar."""
    from rich.console import Console

    console = Console()  # reads the current sys.stdout, and FORCE_COLOR / TTY_COMPATIBLE
    return (console.is_terminal and not console.is_dumb_terminal) or console.is_jupyter


def note(text: str) -> None:
    """Print one line of progress news (no markup), above a running bar when there is one."""
    print(text, file=sys.stdout, flush=True)


def duration(seconds: float) -> str:
    """``0:01:12`` (hours:minutes:seconds, whole seconds)."""
    return str(timedelta(seconds=max(0, round(seconds))))


class ProgressReporter:
    """Progress of `total` units of work named `label`; a context manager.

    ``update(completed=...)`` or ``update(advance=...)`` moves it; ``info`` is a short text shown
    after the count (e.g. "2 failed"), ``label`` a new name (e.g. with the last validation Sharpe
    ratio). ``enabled=False`` shows nothing; ``plain=None`` picks the bar on a terminal and lines
    elsewhere (`interactive`). ``elapsed_before``: seconds spent in earlier sessions of a resumed
    run, counted in the elapsed time (the time left is estimated from this session's pace).
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        completed: int = 0,
        unit: str = "steps",
        enabled: bool = True,
        plain: bool | None = None,
        transient: bool = True,
        elapsed_before: float = 0.0,
        every_percent: float = EVERY_PERCENT,
        every_seconds: float = EVERY_SECONDS,
        info: str = "",
    ) -> None:
        self.label, self.total, self.unit, self.info = label, max(int(total), 0), unit, info
        self.completed = self.first = int(completed)
        self.enabled, self.transient = enabled, transient
        self.plain = (not interactive()) if plain is None else plain
        self.elapsed_before = float(elapsed_before)
        self.every_percent, self.every_seconds = every_percent, every_seconds
        self._bar: Any = None
        self._started = self._last_line = time.monotonic()
        self._last_bucket = self._bucket(self.completed)
        self._finished_line = self.completed >= self.total  # nothing to report for finished work

    # ------------------------------------------------------------------ context
    def __enter__(self) -> ProgressReporter:
        self._started = self._last_line = time.monotonic()
        if self.enabled and not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
            self._bar = Progress(*columns, transient=self.transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.completed, info=self.info)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)
            self._bar = None

    # ------------------------------------------------------------------ updates
    def update(
        self, completed: int | None = None, *, advance: int = 0, label: str | None = None, info: str | None = None
    ) -> None:
        if completed is not None:
            self.completed = int(completed)
        self.completed += advance
        if label is not None:
            self.label = label
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, description=self.label, info=self.info)
        elif self.plain and self._line_due():
            note(self.line())

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self._started

    def line(self) -> str:
        """``label: 40/200 steps (20%), 0:01:12 elapsed, ~0:04:48 left`` (and the info, if any)."""
        percent = 100.0 * self.completed / self.total if self.total else 100.0
        text = f"{self.label}: {self.completed}/{self.total} {self.unit} ({percent:.0f}%)"
        if self.info:
            text += f", {self.info}"
        text += f", {duration(self.elapsed())} elapsed"
        done_now, session = self.completed - self.first, time.monotonic() - self._started
        if self.completed < self.total and done_now > 0:
            text += f", ~{duration(session / done_now * (self.total - self.completed))} left"
        return text

    def _bucket(self, completed: int) -> int:
        if not self.total or self.every_percent <= 0:
            return 0
        return math.floor(100.0 * completed / self.total / self.every_percent)

    def _line_due(self) -> bool:
        now = time.monotonic()
        bucket = self._bucket(self.completed)
        if self.completed >= self.total:
            due = not self._finished_line
            self._finished_line = True
        else:
            due = bucket > self._last_bucket or now - self._last_line >= self.every_seconds
        if due:
            self._last_bucket, self._last_line = bucket, now
        return due


def track(items: Sequence[T], label: str, *, unit: str = "items", enabled: bool = True) -> Iterator[T]:
    """Iterate over `items`, reporting progress as `ProgressReporter` does (a bar or plain lines)."""
    with ProgressReporter(label, len(items), unit=unit, enabled=enabled) as reporter:
        for item in items:
            yield item
            reporter.update(advance=1)


__all__ = ["EVERY_PERCENT", "EVERY_SECONDS", "ProgressReporter", "duration", "interactive", "note", "track"]
