"""Progress for waits longer than a second: what is awaited, the time elapsed, and the deadline.

Shown on stderr only when stderr is a terminal and the command does not print JSON
(`-o json` turns it off through `fresh.output`); elsewhere it stays silent. `rich` is imported
only when a wait actually lasts long enough to show something.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SHOW_AFTER_S = 1.0
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Turn progress off for this process (`-o json`)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


class Wait:
    """A spinner line for one awaited condition, started only once the wait passes SHOW_AFTER_S."""

    def __init__(self, what: str, timeout_s: float | None) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self._progress: Any = None

    def tick(self) -> None:
        if self._progress is not None or not enabled() or time.monotonic() - self.started < SHOW_AFTER_S:
            return
        from rich.console import Console
        from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
        from rich.text import Text

        started, limit = self.started, ("" if self.timeout_s is None else f" of {self.timeout_s:.0f}s deadline")

        class Elapsed(ProgressColumn):  # since the wait began, not since the line appeared
            def render(self, task: Task) -> Text:
                return Text(f"{time.monotonic() - started:.0f}s{limit}")

        self._progress = Progress(
            SpinnerColumn(), TextColumn("waiting for {task.description}"), Elapsed(),
            console=Console(stderr=True), transient=True,
        )
        self._progress.add_task(self.what, total=None)
        self._progress.start()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def waiting(what: str, timeout_s: float | None = None) -> Iterator[Wait]:
    wait = Wait(what, timeout_s)
    try:
        yield wait
    finally:
        wait.close()


class Bar:
    """A progress bar over a known amount of work (seeding), silent where progress is off."""

    def __init__(self, label: str, total: int) -> None:
        self._progress: Any = None
        if not enabled():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task(label, total=total)
        self._progress.start()

    def update(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def bar(label: str, total: int) -> Iterator[Bar]:
    b = Bar(label, total)
    try:
        yield b
    finally:
        b.close()
