"""The stage timer benchmarks/run.py and benchmarks/speedups.py share (no edgekit import: speedups.py also runs
it against an older revision's edgekit)."""

from __future__ import annotations

import logging
import time


class StageClock(logging.Handler):
    """Wall time between the '[stage]' lines edgekit.build logs when each stage starts: a stage's figure
    includes the unlabelled work that follows it (writing files, the report), which is small."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.marks: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("[") and message.endswith("]") and " " not in message:
            self.marks.append((message[1:-1], time.perf_counter()))

    def seconds(self, ended: float) -> dict[str, float]:
        totals: dict[str, float] = {}
        for (name, start), (_, stop) in zip(self.marks, [*self.marks[1:], ("end", ended)], strict=True):
            totals[name] = round(totals.get(name, 0.0) + stop - start, 2)
        return totals
