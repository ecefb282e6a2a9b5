"""One error vocabulary. The CLI turns each of these into one `Error: ...` line and its exit code."""

from __future__ import annotations

import contextlib
import copy
import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path


class EdgekitError(Exception):
    """An expected failure: the message is shown to the user as it is, without a traceback."""

    exit_code = 1


class UsageError(EdgekitError):
    """Misuse or bad input: an unknown name, a malformed file, a wrong shape."""

    exit_code = 2


class StageError(EdgekitError):
    """An operational failure inside a pipeline stage (training diverged, a conversion failed)."""

    exit_code = 1

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage} failed: {reason}")
        self.stage = stage
        self.reason = reason


class BudgetError(EdgekitError):
    """The model runs but misses a budget or an accuracy guard. `result`: what finished anyway (a build's
    BuildResult), for the caller to show before the error."""

    exit_code = 3

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


@contextlib.contextmanager
def about(path: object) -> Iterator[None]:
    """Within it, an EdgekitError whose message does not name the file `path` gets it in front ('PATH: ...'),
    so that every error line says which file it is about."""
    try:
        yield
    except StageError as error:
        if str(path) in error.reason:
            raise
        raise StageError(error.stage, f"{path}: {error.reason}") from error
    except EdgekitError as error:
        if str(path) in str(error):
            raise
        named = copy.copy(error)  # the same kind, with what it carries (a BudgetError's result)
        named.args = (f"{path}: {error}",)
        raise named from error


def unknown_name(kind: str, name: str, valid: Iterable[str], list_command: str) -> UsageError:
    """`unknown target 'rpi44'; did you mean 'rpi4'? `edgekit targets` lists them`."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else f"valid: {', '.join(valid)}; "
    return UsageError(f"unknown {kind} '{name}'; {hint}`{list_command}` lists them")


def require_file(path: str | Path, noun: str, instead: str = "") -> Path:
    """`path` when it is a file; otherwise a one-line UsageError that says whether it does not exist or is a
    folder where a file was expected (`instead`: what to give, for that case)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{noun} '{path}' is a folder, not a file" + (f"; {instead}" if instead else ""))
    if not path.is_file():
        raise UsageError(f"{noun} '{path}' does not exist")
    return path


def run_or_exit(main, *args, **kwargs):
    """Call `main` as a script's entry point: an expected failure prints the one `Error: ...` line and exits
    with its code, as the `edgekit` command does; anything else keeps its traceback."""
    import sys

    try:
        return main(*args, **kwargs)
    except EdgekitError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
