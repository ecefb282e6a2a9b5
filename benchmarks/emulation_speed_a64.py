"""How long one model takes on one emulated Cortex-A core once the aarch64 runtime is cached (goal: <= 20 s wall
for a model under 20 M MACs): the whole counted run as `edgekit bench` makes it (LiteRT's aarch64 build under
qemu-aarch64, warm-up, one invoke counted, split by symbol), without its disk cache of runs. The four MLPerf
Tiny references on the A53, A72 and A76.

    python benchmarks/emulation_speed_a64.py     # writes benchmarks/emulation_speed_a64.json
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
from edgekit.runtimes.emulated_a64 import run_litert
from edgekit.toolchains import aarch64

OUT = Path(__file__).with_name("emulation_speed_a64.json")
GOAL_S = 20.0
CORES = ("cortex-a53", "cortex-a72", "cortex-a76")


def main() -> None:
    aarch64.sysroot()  # cached before timing: the goal is for a cached runtime
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (builder, shape, classes, args) in REFERENCES.items():
            path = Path(scratch) / f"{builder}.tflite"
            path.write_bytes(reference_tflite(builder, shape, classes, args, "int8"))
            info = inspect_tflite(path)
            raw = np.zeros(info.inputs[0].shape, np.dtype(info.inputs[0].dtype))
            rows[name] = {"macs": info.macs}
            for core in CORES:
                started = time.perf_counter()
                run = run_litert(path, core, raw, symbols=True)
                wall = time.perf_counter() - started
                rows[name][core] = {"wall_s": round(wall, 2), "instructions": run.instructions,
                                    "within_goal": wall <= GOAL_S}
    OUT.write_text(json.dumps({"goal_s": GOAL_S, "cpus": os.cpu_count(), "models": rows}, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
