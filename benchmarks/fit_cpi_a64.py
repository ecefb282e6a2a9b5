"""Fit the cycles per instruction (CPI) of the emulated Cortex-A cores and LiteRT's thread scaling on published
measurements; writes edgekit/toolchains/cpi_a64.json (read by edgekit.cycles_a64, whose docstring has the model).

    python benchmarks/a64_points.py      # the instruction counts first (about 10 minutes)
    python benchmarks/fit_cpi_a64.py

The points are those the built-in profiles cite (the rules of the project's calibration notes: each states the
model, the runtime, the threads and the device):

* XNNPACK README (google/XNNPACK, "Performance"), end2end-bench with randomized weights:
  - "Mobile phones", March 27, 2020: single- and multi-threaded ("as many threads as there are big cores")
    times of MobileNet v1, v2, v3 Large and v3 Small fp32 on the Pixel (2 big cores), Pixel 2 (4) and Pixel 3a
    (2). Only their ratios are used, to fit the thread model: their cores (Kryo, Kryo 280, Kryo 360) are not
    emulated, and the split of each model's instructions into threaded and serial work is the A72's count.
  - "Raspberry Pi", Feb 8, 2022, multi-threaded (4 threads): the "RPi 4 (BCM2711, ARM64)" column (Cortex-A72)
    and the "RPi 3+ (BCM2837B0)" column (Cortex-A53 at 1400 MHz, a 32-bit Raspbian build: Armv7 NEON code, not
    the aarch64 code counted here; the band is widened by the 32- vs 64-bit difference the README shows for the
    Pi 4). The README gives no clock for the Pi 4; 1500 MHz is assumed (the BCM2711B0 boards' default), and the
    band is widened by 1800/1500 for boards that ran at 1.8 GHz.
* TensorFlow Lite performance benchmarks (tensorflow/tensorflow, lite/g3doc/performance/benchmarks.md),
  benchmark_model with 4 threads, Android 10: Mobilenet_1.0_224 float and quant on the Pixel 4 (Snapdragon 855,
  Cortex-A76 class cores; 2420 MHz, the three gold cores'; the prime core runs at 2840). Those runs predate
  XNNPACK as LiteRT's default (TFLite's own optimized kernels; the quant model is the uint8 one), so the
  A76's CPI absorbs a different runtime; the band says how far its two points disagree, widened as derived.

Fitting, in log space: the thread model's `spread` and `hand_off` by a grid over the 12 phone ratios; then each
core's CPI per precision (float32, int8) as the geometric mean over its points of published cycles / effective
instructions (the threaded share divided out, the hand-offs added). The band of each core: the largest
leave-one-out residual of all the per-precision fits (not only the core's own: two MobileNets per precision
say little about other models), times the core's widening above and the thread model's band. Cores without
points (the flagship's) get a derived CPI and say so.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from edgekit.cycles_a64 import Threads, cycles

HERE = Path(__file__).resolve().parent
COUNTS = HERE / "a64_points.json"
OUT = HERE.parent / "edgekit" / "toolchains" / "cpi_a64.json"

XNNPACK_PHONES = "google/XNNPACK README, Mobile phones tables (end2end_bench, March 27, 2020)"
XNNPACK_PI = "google/XNNPACK README, Raspberry Pi table (end2end-bench, Feb 8, 2022), 4 threads"
TFLITE_PIXEL4 = "tensorflow/tensorflow lite/g3doc/performance/benchmarks.md, Pixel 4, CPU 4 threads, Android 10"
MODELS = ("mobilenet-v1", "mobilenet-v2", "mobilenet-v3-large", "mobilenet-v3-small")
# phone: (big cores = threads, clock MHz, single-threaded ms, multi-threaded ms), MODELS order, fp32
PHONES = {
    "Pixel (Snapdragon 821)": (2, 2150, (82, 49, 39, 12), (43, 26, 22, 7)),
    "Pixel 2 (Snapdragon 835)": (4, 2350, (86, 53, 42, 14), (27, 18, 16, 6)),
    "Pixel 3a (Snapdragon 670)": (2, 2000, (88, 55, 44, 14), (46, 28, 24, 8)),
}
# (emulated core, model, precision, published ms, threads, clock MHz, source)
POINTS = [
    *(("cortex-a72", m, "float32", ms, 4, 1500, XNNPACK_PI + ", RPi 4 (BCM2711, ARM64)")
      for m, ms in zip(MODELS, (77, 46, 40, 15), strict=True)),
    *(("cortex-a72", m, "int8", ms, 4, 1500, XNNPACK_PI + ", RPi 4 (BCM2711, ARM64), per-channel int8")
      for m, ms in zip(MODELS[:2], (24, 17), strict=True)),
    *(("cortex-a53", m, "float32", ms, 4, 1400, XNNPACK_PI + ", RPi 3+ (BCM2837B0), 32-bit build")
      for m, ms in zip(MODELS, (114, 79, 67, 22), strict=True)),
    *(("cortex-a53", m, "int8", ms, 4, 1400, XNNPACK_PI + ", RPi 3+ (BCM2837B0), 32-bit build, per-channel int8")
      for m, ms in zip(MODELS[:2], (46, 30), strict=True)),
    ("cortex-a76", "mobilenet-v1", "float32", 14.0, 4, 2420, TFLITE_PIXEL4 + ", Mobilenet_1.0_224 (float)"),
    ("cortex-a76", "mobilenet-v1", "int8", 5.0, 4, 2420, TFLITE_PIXEL4 + ", Mobilenet_1.0_224 (quant, uint8)"),
]
# The Pi 4 columns of the same README, 32-bit build vs 64-bit (ms): how much the instruction set alone moves a time.
PI4_32_64 = ((72, 77), (41, 46), (38, 40), (13, 15), (29, 24), (20, 17))
PI4_CLOCK_WIDENING = 1800 / 1500
DERIVED_WIDENING = 1.5
DERIVED = {  # core without a point: (from, why)
    "cortex-a720": ("cortex-a76", "derived: no published LiteRT CPU time of a Cortex-A720 class core; the A76's CPI "
                                  "(the A720 is a wider core, so this errs slow)"),
}


def counted(counts: dict, model: str, precision: str, core: str) -> tuple[float, float, int]:
    run = counts[f"{model} {precision}"]["cores"][core]
    return run["serial"], run["parallel"], run["parallelized_ops"]


def fit_threads(counts: dict) -> tuple[Threads, list[dict]]:
    def predicted_ratio(model: Threads, serial: float, parallel: float, ops: int, n: int, single_ms: float,
                        mhz: float) -> float:
        cpi = single_ms * mhz * 1e3 / (serial + parallel)  # the phone's own CPI, from its single-threaded time
        return cycles(cpi, serial, parallel, ops, n, model) / (mhz * 1e3) / single_ms

    rows = []
    for phone, (n, mhz, single, multi) in PHONES.items():
        for model, one, many in zip(MODELS, single, multi, strict=True):
            serial, parallel, ops = counted(counts, model, "float32", "cortex-a72")
            rows.append((phone, model, n, mhz, one, many, serial, parallel, ops))

    def residuals(model: Threads) -> np.ndarray:
        return np.array([math.log(predicted_ratio(model, s, p, k, n, one, mhz) * one / many)
                         for _, _, n, mhz, one, many, s, p, k in rows])

    grid = [Threads(float(spread), float(hand_off), 1.0, "") for spread, hand_off in
            itertools.product(np.arange(0, 0.401, 0.005), np.arange(0, 100_001, 500))]
    best = min(grid, key=lambda model: float(np.sum(residuals(model) ** 2)))
    found = residuals(best)
    factor = math.exp(float(np.max(np.abs(found))))
    model = Threads(round(best.spread, 3), best.hand_off, math.ceil(factor * 1000) / 1000,
                    f"{XNNPACK_PHONES}: single- vs multi-threaded MobileNet v1/v2/v3 on three Pixels, 12 ratios, "
                    f"largest residual x/÷{factor:.2g}")
    table = [{"phone": phone, "model": m, "threads": n, "single_ms": one, "multi_ms": many,
              "predicted_multi_ms": round(many * math.exp(-r), 2), "residual": round(math.exp(r), 3)}
             for (phone, m, n, _, one, many, _, _, _), r in zip(rows, found, strict=True)]
    return model, table


def fit_cores(counts: dict, model: Threads) -> tuple[dict, list[dict]]:
    """Each core's CPI per precision (float32 and int8 kernels differ: on the Pi 4 the same MobileNets imply a
    CPI 2.7 times as high for float32, which moves four times the weight bytes); the band of every core at least
    the largest leave-one-out residual of any core and precision, times the core's own widening and the thread
    model's band."""
    def implied_cpi(point) -> float:
        core, m, precision, ms, n, mhz, _ = point
        serial, parallel, ops = counted(counts, m, precision, core)
        extra = n - 1
        return ms * mhz * 1e3 / (serial + parallel * (1 + model.spread * extra) / n + ops * extra * model.hand_off)

    isa = max(abs(math.log(b / a)) for a, b in PI4_32_64)
    widening = {"cortex-a72": PI4_CLOCK_WIDENING, "cortex-a53": math.exp(isa), "cortex-a76": DERIVED_WIDENING}
    how = {"cortex-a72": "clock of the measured Pi 4 assumed 1500 MHz: widened x1.2 for boards at 1800",
           "cortex-a53": f"the Pi 3+ ran a 32-bit build: widened x{math.exp(isa):.2f}, the Pi 4's largest 32- vs "
                         "64-bit difference",
           "cortex-a76": "the Pixel 4 ran TFLite's pre-XNNPACK kernels (the quant model uint8): widened x1.5"}
    fitted: dict[str, dict[str, float]] = {}
    residual, table = 0.0, []
    for core in dict.fromkeys(p[0] for p in POINTS):
        fitted[core] = {}
        for precision in ("float32", "int8"):
            points = [p for p in POINTS if p[0] == core and p[2] == precision]
            implied = np.array([implied_cpi(p) for p in points])
            cpi = float(np.exp(np.mean(np.log(implied))))
            fitted[core][precision] = cpi
            if len(implied) > 1:
                residual = max(residual, *(abs(math.log(implied[i] / math.exp(np.mean(np.log(np.delete(implied, i))))))
                                           for i in range(len(implied))))
            for p, value in zip(points, implied, strict=True):
                table.append({"core": core, "model": p[1], "precision": precision, "published_ms": p[3],
                              "threads": p[4], "clock_mhz": p[5], "source": p[6], "implied_cpi": round(float(value), 3),
                              "predicted_ms": round(p[3] * cpi / value, 2)})
    cores = {}
    for core, cpis in fitted.items():
        factor = math.exp(residual) * widening[core] * model.error_factor
        sources = sorted({p[6].split(",")[0] for p in POINTS if p[0] == core})
        cores[core] = {"cpi": {k: round(v, 3) for k, v in cpis.items()},
                       "error_factor": math.ceil(factor * 1000) / 1000, "basis": "fitted",
                       "method": f"fitted per precision on {sum(p[0] == core for p in POINTS)} published times "
                                 f"({'; '.join(sources)}); band: the largest leave-one-out residual of all cores' fits "
                                 f"x/÷{math.exp(residual):.2f}, {how[core]}, and the thread model's "
                                 f"x/÷{model.error_factor:.2g}"}
    for core, (source, why) in DERIVED.items():
        cores[core] = {**cores[source], "error_factor": round(cores[source]["error_factor"] * DERIVED_WIDENING, 3),
                       "basis": "derived", "method": why}
    return cores, table


def main() -> None:
    counts = json.loads(COUNTS.read_text())
    threads, ratio_table = fit_threads(counts)
    cores, point_table = fit_cores(counts, threads)
    first = next(iter(counts.values()))
    OUT.write_text(json.dumps({
        "model": "cycles = CPI x (serial + parallel x (1 + spread x (n - 1)) / n + ops x (n - 1) x hand_off)",
        "threads": {"spread": threads.spread, "hand_off": threads.hand_off, "error_factor": threads.error_factor,
                    "method": threads.method},
        "cores": cores, "points": point_table, "thread_pairs": ratio_table,
        "counted_with": {"qemu": first.get("qemu"), **first.get("versions", {})},
    }, indent=1) + "\n")
    print(json.dumps({"threads": threads.__dict__, "cores": cores}, indent=1))


if __name__ == "__main__":
    main()
