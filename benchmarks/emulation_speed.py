"""How long one model takes on one emulated core once the core's library objects are cached (goal: <= 3 s
wall): build the bundle's program, run it on QEMU with the counting plugin, read the counts. Each of the
four MLPerf Tiny references is run twice on the Cortex-M4 (the first run also compiles whatever the cache
lacks) and the second run's wall time is kept.

    python benchmarks/emulation_speed.py     # writes benchmarks/emulation_speed.json
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from calibration import reference_tflite
from emulated_counts import REFERENCES

from edgekit.model_info import inspect_tflite
from edgekit.runtimes import emulated
from edgekit.runtimes import tflm as micro
from edgekit.toolchains.cores import core

OUT = Path(__file__).with_name("emulation_speed.json")
GOAL_S = 3.0


def main() -> None:
    m4 = core("Cortex-M4")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (builder, shape, classes, args) in REFERENCES.items():
            path = Path(scratch) / f"{builder}.tflite"
            path.write_bytes(reference_tflite(builder, shape, classes, args, "int8"))
            info = inspect_tflite(path)
            raw = np.zeros(info.inputs[0].shape[1:], np.dtype(info.inputs[0].dtype))
            expected = np.asarray(micro.measure(path, sample=raw, find_min_arena=False).output,
                                  np.dtype(info.outputs[0].dtype))
            emulated.run_model(path, m4, raw, expected)  # fills the cache
            started = time.perf_counter()
            run = emulated.run_model(path, m4, raw, expected)
            wall = time.perf_counter() - started
            rows[name] = {"wall_s": round(wall, 2), "instructions": run.instructions, "within_goal": wall <= GOAL_S}
    OUT.write_text(json.dumps({"core": m4.name, "goal_s": GOAL_S, "cpus": os.cpu_count(), "models": rows},
                              indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
