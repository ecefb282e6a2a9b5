"""Results alone on stdout (DESIGN.md, principle 11), on every code path.

While a command runs (`results_only`), everything else that writes to standard output goes to stderr: Keras's
"Downloading data from ..." and its progress bar, a stray print in a library, TensorFlow's, absl's and the
converters' native output, and child processes (the runtimes, sweep workers), which inherit file descriptor 1.
The command's results reach the real stdout through `echo`, so `edgekit ... --json > file` holds JSON only.
Importing this module loads Click only."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

import click

_results: TextIO | None = None  # where `echo` writes while `results_only` holds stdout for results


def results() -> TextIO:
    """The stream results go to: the real stdout, also inside `results_only`."""
    return _results or sys.stdout


def echo(message: Any = "", nl: bool = True) -> None:
    """Print a result (click.echo on the real stdout)."""
    click.echo(message, file=results(), nl=nl)


def is_terminal() -> bool:
    """Whether results go to a terminal (a person reads them) rather than a pipe or a file."""
    stream = results()
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def width() -> int:
    """The terminal's width in columns: $COLUMNS when it is a number, else the terminal results go to, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return os.get_terminal_size(results().fileno()).columns
    return 80


def _descriptor(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: CliRunner's in-memory streams
        return None


@contextlib.contextmanager
def results_only() -> Iterator[None]:
    """Send sys.stdout and, when stdout is the process's file descriptor 1, the descriptor itself to stderr for
    the block; `echo` still prints on the real stdout. In-memory streams (CliRunner) are redirected in Python
    only, since nothing native can write to them."""
    global _results
    if _results is not None:  # already held: sys.stdout is stderr by now
        yield
        return
    stdout = sys.stdout
    stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1) if _descriptor(stdout) == 1 and _descriptor(sys.stderr) == 2 else None
    if saved is not None:
        os.dup2(2, 1)
        _results = open(saved, "w", encoding=stdout.encoding, errors=stdout.errors, closefd=False)  # noqa: SIM115
    else:
        _results = stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = stdout
        if saved is not None:
            _results.flush()
            _results.close()
            os.dup2(saved, 1)
            os.close(saved)
        _results = None


def holding_results(callback):
    """`callback` (a command's), run inside `results_only`."""

    @functools.wraps(callback)
    def held(*args, **kwargs):
        with results_only():
            return callback(*args, **kwargs)

    return held


def echo_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a table of results (edgekit.report.table): fitted to the terminal, or plain when piped."""
    from edgekit.report.table import render_table

    echo(render_table(title, columns, rows, is_terminal()), nl=False)
