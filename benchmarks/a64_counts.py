"""The zoo's models in the real LiteRT runtime (aarch64 wheel, XNNPACK, one thread) on the emulated Cortex-A53,
A72, A76 and A720 cores, one invoke counted after warm-up, the output compared with this host's LiteRT; and
the target latency edgekit gives from each count for the built-in profile of that core (its clock, 4 threads:
edgekit.cycles_a64 with the fit of benchmarks/fit_cpi_a64.py).

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

from edgekit import targets
from edgekit.cycles_a64 import litert_latency
from edgekit.model_info import inspect_tflite
from edgekit.runtimes.emulated_a64 import counted_run
from edgekit.runtimes.litert import TFLiteRunner

HERE = Path(__file__).resolve().parent
OUT, DOC = HERE / "a64_counts.json", HERE.parent / "docs" / "emulation-a.md"
BEGIN, END = "<!-- a64_counts.py: begin -->", "<!-- a64_counts.py: end -->"
CORES = ("cortex-a53", "cortex-a72", "cortex-a76", "cortex-a720")
PROFILES = {"cortex-a53": "rpi-zero-2w", "cortex-a72": "rpi4", "cortex-a76": "rpi5", "cortex-a720": "android-flagship"}
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
        run = counted_run(path, core, raw)
        got = np.frombuffer(bytes.fromhex(run.output_hex), np.dtype(run.output_dtype))
        latency = litert_latency(run, targets.load(PROFILES[core]), precision)
        rows[core] = {"instructions": run.instructions, "figure_instructions": latency.instructions,
                      "wall_s": round(run.wall_s, 1), "profile": PROFILES[core],
                      "ms": latency.ms, "low_ms": latency.low_ms, "high_ms": latency.high_ms, "band": latency.band,
                      "threads": latency.threads, "parallel": latency.emulation["parallel_instructions"],
                      "output_hex_prefix": run.output_hex[:16],
                      "output_matches_host": bool(np.array_equal(got, host_output.ravel())),
                      "output_max_diff": float(np.abs(got.astype(np.float64) - host_output.ravel()).max())}
        print(f"{label} on {core}: {run.instructions:,} instructions ({run.wall_s:.1f} s)", file=sys.stderr)
    return {"macs": info.macs, "precision": precision, "cores": rows, "qemu": run.qemu, "versions": run.versions}


def table(results: dict) -> str:
    header = " | ".join(f"{core} ({PROFILES[core]}, {targets.load(PROFILES[core]).cpu.clock_mhz:g} MHz)"
                        for core in CORES)
    lines = ["| model | MACs | " + header + " | output vs host LiteRT |", "|---|---:|" + "---:|" * len(CORES)
             + "---|"]
    for label, entry in results.items():
        runs = entry["cores"].values()
        check = "bit-exact on all" if all(r["output_matches_host"] for r in runs) else \
            f"largest difference {max(r['output_max_diff'] for r in runs):.2g}"
        cells = (entry["cores"][c] for c in CORES)
        figures = " | ".join(f"{cell['figure_instructions']:,} → {cell['ms']:.3g} ms {cell['band']}" for cell in cells)
        lines.append(f"| {label} | {entry['macs']:,} | {figures} | {check} |")
    first = next(iter(results.values()))
    return "\n".join([BEGIN, "", f"Counted with {first['qemu']}; in the emulator: "
                      + ", ".join(f"{k} {v}" for k, v in first["versions"].items()) + ". Each cell: instructions of "
                      "one invoke on one thread (the Python binding's left out) → edgekit's target latency for the "
                      "profile named in the column (its clock, LiteRT on up to 4 threads) with its band.", "", *lines,
                      "", fit_table(), "", END])


def fit_table() -> str:
    """The published points the fit used, and what the fitted model gives for each at the point's own clock and
    threads (benchmarks/fit_cpi_a64.py)."""
    fit = json.loads((HERE.parent / "edgekit" / "toolchains" / "cpi_a64.json").read_text())
    lines = ["Published points (the fit's; `benchmarks/fit_cpi_a64.py`) and the fitted model's time for each, at "
             "the point's clock and threads:", "", "| core | model | precision | threads | clock | published | "
             "edgekit | source |", "|---|---|---|---:|---:|---:|---:|---|"]
    for p in fit["points"]:
        lines.append(f"| {p['core']} | {p['model']} | {p['precision']} | {p['threads']} | {p['clock_mhz']:g} MHz | "
                     f"{p['published_ms']:g} ms | {p['predicted_ms']:.3g} ms | {p['source']} |")
    cores = "; ".join(f"{core} CPI {c['cpi']['float32']:.3g} (float32), {c['cpi']['int8']:.3g} (int8) "
                      f"x/÷{c['error_factor']:.2g} ({c['basis']})" for core, c in fit["cores"].items())
    threads = fit["threads"]
    lines += ["", f"Fitted: {cores}. Threads: {threads['spread']:.1%} of the kernels' work added per extra "
                  f"thread, {threads['hand_off']:,.0f} instructions' worth per hand-off and extra thread "
                  f"({threads['method']})."]
    return "\n".join(lines)


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label in MODELS:
            results[label] = count(label, Path(scratch))
            OUT.write_text(json.dumps(results, indent=1) + "\n")
    DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), table(results), DOC.read_text(), flags=re.S))


if __name__ == "__main__":
    main()
