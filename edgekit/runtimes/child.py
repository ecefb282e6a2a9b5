"""What a runtime child process (edgekit.runtimes.tflm's TFLite Micro runs, edgekit.runtimes.host's LiteRT /
ONNX Runtime smoke runs) reported before it ended: one JSON record a line on its stdout, `{"begin": PHASE}` as
it starts each phase."""

from __future__ import annotations

import json


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
    import signal

    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
