"""Issue 17 groundwork: the zoo's models in the real LiteRT runtime (aarch64 wheel, XNNPACK, one thread) on
emulated Cortex-A53, A72 and A76 cores, one invoke counted after warm-up, the output compared with this
host's LiteRT. Instructions only: no cycles per instruction are fitted yet, so no milliseconds.

    python benchmarks/a64_counts.py      # writes benchmarks/a64_counts.json and the table of docs/emulation-a.md
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from calibration import reference_tflite

from edgekit.model_info import inspect_tflite
from edgekit.runtimes.emulated_a64 import run_litert
from edgekit.runtimes.litert import TFLiteRunner

HERE = Path(__file__).resolve().parent
OUT, DOC = HERE / "a64_counts.json", HERE.parent / "docs" / "emulation-a.md"
BEGIN, END = "<!-- a64_counts.py: begin -->", "<!-- a64_counts.py: end -->"
CORES = ("cortex-a53", "cortex-a72", "cortex-a76")
MODELS = {  # label: (zoo builder, input, classes, args, precision)
    "digits-cnn (small-cnn 32/64/128) int8": ("small-cnn", (8, 8, 1), 10, (("dense_units", 128), ("filters", (32, 64))),
                                              "int8"),
    "kws ds-cnn int8": ("ds-cnn", (49, 10, 1), 12, (), "int8"),
    "vww mobilenet-v1 0.25 int8": ("mobilenet-v1", (96, 96, 3), 2, (("alpha", 0.25),), "int8"),
    "ic resnet8 int8": ("resnet8", (32, 32, 3), 10, (), "int8"),
    "ad fc-autoencoder int8": ("fc-autoencoder", (640,), None, (), "int8"),
    "mobilenet-v1 1.0 224 int8": ("mobilenet-v1", (224, 224, 3), 1000, (("alpha", 1.0),), "int8"),
    "mobilenet-v1 1.0 224 float32": ("mobilenet-v1", (224, 224, 3), 1000, (("alpha", 1.0),), "float32"),
}


def count(label: str, folder: Path) -> dict:
    builder, shape, classes, args, precision = MODELS[label]
    path = folder / f"{builder}-{'x'.join(map(str, shape))}-{precision}.tflite"
    path.write_bytes(reference_tflite(builder, shape, classes, args, precision))
    info = inspect_tflite(path)
    dtype = np.dtype(info.inputs[0].dtype)
    rng = np.random.default_rng(0)
    raw = (rng.integers(-128, 128, info.inputs[0].shape) if dtype.kind == "i" else
           rng.uniform(0, 1, info.inputs[0].shape)).astype(dtype)
    host_output = TFLiteRunner(path).run_raw(raw)
    rows = {}
    for core in CORES:
        run = run_litert(path, core, raw)
        got = np.frombuffer(bytes.fromhex(run.output_hex), np.dtype(run.output_dtype))
        rows[core] = {"instructions": run.instructions, "wall_s": round(run.wall_s, 1),
                      "output_hex_prefix": run.output_hex[:16],
                      "output_matches_host": bool(np.array_equal(got, host_output.ravel())),
                      "output_max_diff": float(np.abs(got.astype(np.float64) - host_output.ravel()).max())}
        print(f"{label} on {core}: {run.instructions:,} instructions ({run.wall_s:.1f} s)", file=sys.stderr)
    return {"macs": info.macs, "precision": precision, "cores": rows, "qemu": run.qemu, "versions": run.versions}


def table(results: dict) -> str:
    lines = ["| model | MACs | " + " | ".join(CORES) + " | output vs host LiteRT |", "|---|---:|" + "---:|" * len(CORES)
             + "---|"]
    for label, entry in results.items():
        runs = entry["cores"].values()
        check = "bit-exact on all" if all(r["output_matches_host"] for r in runs) else \
            f"largest difference {max(r['output_max_diff'] for r in runs):.2g}"
        lines.append(f"| {label} | {entry['macs']:,} | " + " | ".join(
            f"{entry['cores'][c]['instructions']:,}" for c in CORES) + f" | {check} |")
    first = next(iter(results.values()))
    return "\n".join([BEGIN, "", f"Counted with {first['qemu']}; in the emulator: "
                      + ", ".join(f"{k} {v}" for k, v in first["versions"].items()) + ".", "", *lines, "", END])


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label in MODELS:
            results[label] = count(label, Path(scratch))
            OUT.write_text(json.dumps(results, indent=1) + "\n")
    DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), table(results), DOC.read_text(), flags=re.S))


if __name__ == "__main__":
    main()
