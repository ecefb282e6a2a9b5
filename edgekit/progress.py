"""Progress bars for the long loops: training epochs (train, prune, cluster, QAT), calibration and benchmark runs.

Library code reports progress through `task()` and never prints. Nothing is drawn unless a caller has opened
`display()`: the CLI does when stderr is a terminal and --quiet is not given. Without a display, `task()` hands
out a handle that does nothing, so library callers, pipes and CliRunner see only the plain log lines (one per
epoch). rich is imported only when a display draws its first bar.

Bars are redrawn at most every REFRESH_SECONDS, from the loop that advances them: no drawing thread runs, so
a bar never takes the processor while a benchmark times a run. The display writes to its own duplicate of
file descriptor 2, so a bar stays visible while the converter's native output on descriptor 2 is captured."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

REFRESH_SECONDS = 0.1


class Task:
    """One bar: advance it as work is done; `describe` changes its text (the latest epoch's figures)."""

    def __init__(self, display: _Display | None, description: str, total: int):
        self.total, self.completed = total, 0
        # the display drawing this bar and the bar's id in it; None when nothing is drawn or once closed
        self._bar = (display, display.add(description, total)) if display else None

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        if self._bar is not None:
            display, task_id = self._bar
            display.update(task_id, advance=steps, force=self.completed >= self.total)

    def describe(self, description: str) -> None:
        if self._bar is not None:
            display, task_id = self._bar
            display.update(task_id, description=description, force=False)

    def close(self) -> None:
        if self._bar is not None:
            display, task_id = self._bar
            display.remove(task_id)
            self._bar = None


class _Display:
    """rich's Progress, started with the first bar and stopped when the last one closes (so nothing is drawn
    between stages, where results may be printed to the same terminal)."""

    def __init__(self, console):
        self.console = console
        self.progress: Progress | None = None
        self.last_refresh = 0.0

    def add(self, description: str, total: int) -> TaskID:
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            # redirect_*: results on stdout must stay on stdout; auto_refresh: no drawing thread
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.console, transient=True, auto_refresh=False,
                                     redirect_stdout=False, redirect_stderr=False)
            self.progress.start()
        task_id = self.progress.add_task(description, total=total)
        self.progress.refresh()
        self.last_refresh = time.monotonic()
        return task_id

    def update(self, task_id: TaskID, force: bool, **changes: Any) -> None:
        if self.progress is None:  # stopped: the last bar was closed
            return
        self.progress.update(task_id, **changes)
        now = time.monotonic()
        if force or now - self.last_refresh >= REFRESH_SECONDS:
            self.progress.refresh()
            self.last_refresh = now

    def remove(self, task_id: TaskID) -> None:
        if self.progress is None:
            return
        self.progress.remove_task(task_id)
        if not self.progress.tasks:
            self.stop()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log(self, message: str) -> bool:
        """Print a log line above the bars; False when no bar is drawn (the caller writes it plainly)."""
        if self.progress is None:
            return False
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)
        return True


_active: _Display | None = None


@contextlib.contextmanager
def display(console=None) -> Iterator[None]:
    """Draw the tasks started inside the block as progress bars on `console` (a rich Console; default: one on
    a duplicate of stderr's file descriptor)."""
    global _active
    stream = None
    if console is None:
        from rich.console import Console

        stream = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
        console = Console(file=stream)
    previous, _active = _active, _Display(console)
    try:
        yield
    finally:
        _active.stop()
        _active = previous
        if stream is not None:
            stream.close()


def begin(description: str, total: int) -> Task:
    """A bar for `total` steps (a no-op handle when no display is open); close it when done."""
    return Task(_active, description, max(int(total), 1))


@contextlib.contextmanager
def task(description: str, total: int) -> Iterator[Task]:
    """`begin`, closed when the block ends, however it ends."""
    handle = begin(description, total)
    try:
        yield handle
    finally:
        handle.close()


class LogHandler(logging.StreamHandler):
    """Log lines as a StreamHandler writes them, or above the bars while a display draws some."""

    def emit(self, record: logging.LogRecord) -> None:
        if _active is not None:
            try:
                if _active.log(self.format(record)):
                    return
            except Exception:  # logging must never break the work it reports on
                self.handleError(record)
                return
        super().emit(record)


def setup_logging(stream: Any, verbose: bool = False, quiet: bool = False) -> None:
    """The CLI's logging: edgekit's log lines to `stream` (above the bars while a display draws some), message
    only; debug detail with `verbose`, warnings and errors only with `quiet`."""
    handler = LogHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("edgekit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
