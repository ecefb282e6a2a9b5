"""Runtimes in a supervised child process, both sides of it.

The parent runs `python -m MODULE ARGS` with `run_child`, under a timeout and with this package on
PYTHONPATH. The child (edgekit.runtimes.host's LiteRT / ONNX Runtime smoke runs, edgekit.runtimes.tflm_child's
TFLite Micro runs, the emulators to come) reports through a `Reporter`: one JSON record a line on its
stdout, `{"begin": PHASE}` as it starts each phase, `{"usage_error": TEXT}` when the runtime read the model
or the input and refused it, `{"end": true}` once it has said all it had to say. Whatever ends the child
otherwise (a hang, a signal, an exit without its end record) becomes one error line naming the model, the
runtime and the phase the child was in.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import StageError, UsageError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_LINE = 300  # characters kept of the child's last stderr line


@dataclass(frozen=True)
class ChildRun:
    """What a child process that ran to its end reported."""

    records: tuple[dict[str, Any], ...]

    @property
    def values(self) -> dict[str, Any]:
        """Every record merged in order (a later value wins), without the phase and end markers."""
        merged: dict[str, Any] = {}
        for record in self.records:
            merged.update({k: v for k, v in record.items() if k not in ("begin", "end")})
        return merged


def run_child(module: str, args: Sequence[str], *, model: str, runtime: str, stage: str, timeout_s: float,
              crash_hint: str) -> ChildRun:
    """Run `python -m module *args` (this interpreter, `sys.executable`, as it is at the call) and return
    what it reported, once it reported its end. `model` names the file in the errors, `runtime` the runtime
    ('LiteRT'), `stage` the StageError's stage ('litert'); `crash_hint` says what a crash suggests.

    The child runs in a process group of its own, so a timeout ends it and whatever it forked. Raises:
    - StageError "MODEL: no result from RUNTIME within T s while PHASE (...)" past `timeout_s`;
    - StageError "MODEL: RUNTIME crashed (SIGSEGV) in a child process while PHASE; HINT" when a signal ended it;
    - UsageError "MODEL: TEXT" when the child reported `{"usage_error": TEXT}`;
    - StageError "MODEL: the RUNTIME child process exited with status N while PHASE: LAST STDERR LINE" for an
      exit without the end record (status 0 included)."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, _ = process.communicate()
            raise StageError(stage, f"{model}: no result from {runtime} within {timeout_s:g} s while "
                                    f"{phase(records(stdout))} (the runtime hung, or the model is that slow on "
                                    "this host)") from None
        except BaseException:  # an interrupt here must not leave the child running
            _kill_group(process)
            raise
    found = records(stdout)
    where = phase(found)
    if process.returncode < 0:
        raise StageError(stage, f"{model}: {runtime} crashed ({signal_name(process.returncode)}) in a child process "
                                f"while {where}; {crash_hint}")
    done = ChildRun(tuple(found))
    if "usage_error" in done.values:
        if "\n" in done.values.get("detail", ""):  # the runtime's whole message, for --verbose
            logging.getLogger("edgekit").debug("%s said:\n%s", runtime, done.values["detail"])
        raise UsageError(f"{model}: {done.values['usage_error']}")
    if process.returncode != 0 or not any("end" in record for record in found):
        last = (stderr.strip().splitlines() or ["no message"])[-1][:_LINE]
        raise StageError(stage, f"{model}: the {runtime} child process exited with status {process.returncode} "
                                f"while {where}: {last}")
    return done


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone
        pass
    except AttributeError:  # no process groups on this platform
        process.kill()


def records(stdout: str | bytes | None) -> list[dict]:
    """The complete records, in order; a line cut short by a crash or a kill ends them."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout or ""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return found


def phase(found: list[dict]) -> str:
    """The phase the child began last: where it was when it stopped."""
    return next((r["begin"] for r in reversed(found) if "begin" in r), "starting")


def signal_name(returncode: int) -> str:
    """'SIGSEGV' for a child that a signal ended (a negative return code), as the crash lines name it."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Reporter:
    """The child's side: records go to the process's real stdout, one JSON object a line, and file
    descriptor 1 is pointed at stderr, so that a stray native printf cannot land among them."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)

    def emit(self, **record: Any) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def begin(self, what: str) -> None:
        """Say which phase starts now: where a crash or a hang from here on will be placed."""
        self.emit(begin=what)
