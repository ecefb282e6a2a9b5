"""Fit the latency cost-model constants of every target profile to the published measurements
(for the microcontrollers, the `[[latency.calibration]]` points of the profiles, each citing its `source`;
cited LiteRT benchmarks for the phones and boards). The ESP32-S3's int8 rates have no measurement to fit:
they are derived from ESP-NN's kernels by benchmarks/esp_nn_rates.py, whose entry is carried over here.

    python benchmarks/calibrate.py            # writes benchmarks/calibration.json and prints TOML tables

The constants are then copied, with their derivation, into each targets/*.toml `[latency]` table; the
tests re-check every calibration point there against the cost model (tests/test_calibration.py).

The Cortex-M profiles no longer have such a table (their cores are emulated: benchmarks/fit_cpi.py fits
their cycles per instruction on the same published points). The Cortex-M rates fitted here remain the
basis of the ESP32-S3's float32 (reference-kernel) rate and a record of the cost model they replaced.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import esp_nn_rates
import numpy as np
from calibration import model_info
from scipy.optimize import least_squares

from edgekit import targets
from edgekit.estimate import MAC_KINDS, LatencyModel, estimate_latency

OUT = Path(__file__).with_name("calibration.json")

# Models (zoo builder, input, classes, args) of the published points.
KWS = ("ds-cnn", (49, 10, 1), 12, ())
VWW = ("mobilenet-v1", (96, 96, 3), 2, (("alpha", 0.25),))
IC = ("resnet8", (32, 32, 3), 10, ())
AD = ("fc-autoencoder", (640,), None, ())
MOBILENET_224 = ("mobilenet-v1", (224, 224, 3), 1000, (("alpha", 1.0),))
MOBILENET_025_128 = ("mobilenet-v1", (128, 128, 3), 1000, (("alpha", 0.25),))
# tensorflow/lite/g3doc/guide/hosted_models.md: Pixel 3 (4x Cortex-A75 at 2.8 GHz), 4 threads, Android 10.
PIXEL3 = {"int8": [(MOBILENET_224, 13.0), (MOBILENET_025_128, 0.8)],
          "float32": [(MOBILENET_224, 24.0), (MOBILENET_025_128, 1.2)]}

# MLPerf Tiny v0.5 reference (mlcommons/tiny_results_v0.5), Nucleo-L4R5ZI (Cortex-M4F, 120 MHz),
# TFLM 2.3.1 + CMSIS-NN (2020).
L4R5_POINTS = [(KWS, 2_656_768, 181.92), (VWW, 7_489_664, 600.60), (IC, 12_501_632, 704.23), (AD, 264_192, 10.05)]
# mit-han-lab/tinyengine README, STM32H743 (Cortex-M7, 480 MHz), MCUNet VWW models (MACs, ms).
H743_CMSIS = [("mcunet-vww0", 6.0e6, 53.0), ("mcunet-vww1", 11.6e6, 97.0), ("mcunet-vww2", 55.8e6, 478.0)]
H743_REFERENCE = [("mcunet-vww0", 6.0e6, 587.0), ("mcunet-vww1", 11.6e6, 1120.0), ("mcunet-vww2", 55.8e6, 5310.0)]
# Arm's published CoreMark/MHz per core (Arm Cortex-M0+, M4 and M7 product pages).
COREMARK_PER_MHZ = {"Cortex-M0+": 2.46, "Cortex-M4": 3.42, "Cortex-M7": 5.01}

MCU_BYTES_PER_CYCLE = {"Cortex-M4": 1.0, "Cortex-M7": 2.0, "Cortex-M0+": 0.5, "Xtensa LX7": 1.0}
MCU_OP_OVERHEAD = 1000.0  # cycles per op: TFLM's invoke loop, prepare-time lookups, requantisation setup
LITERT_BYTES_PER_CYCLE = 8.0  # one 128-bit NEON load per cycle, minus stalls
LITERT_OP_OVERHEAD = None  # cycles per op: fitted on the Pixel 3 pair of a large and a small model
LITERT_RELATIVE = {"conv": 1.0, "depthwise_conv": 0.25, "dense": 0.25}  # GEMV and depthwise are memory-bound


def info(spec, precision="int8"):
    builder, shape, classes, args = spec
    return model_info(builder, shape, classes, args, precision)


def cycles(model_info_, rates, bytes_per_cycle, overhead):
    target = replace(targets.load("nucleo-l4r5zi"), latency=LatencyModel(
        runtime="fit", threads=1, macs_per_cycle={"int8": rates}, bytes_per_cycle=bytes_per_cycle,
        op_overhead_cycles=overhead, expected_error=1.0, method="fit"))
    return estimate_latency(model_info_, target, "int8").ms * 1e-3 * target.cpu.clock_mhz * 1e6


def fit_rates(points, clock_mhz, bytes_per_cycle, overhead, kinds=MAC_KINDS):
    """Per-kind MACs/cycle minimising the squared log error over (model info, published ms) points."""
    def residuals(log_rates):
        rates = dict(zip(kinds, np.exp(log_rates), strict=True))
        return [math.log(cycles(i, rates, bytes_per_cycle, overhead) / (ms * 1e-3 * clock_mhz * 1e6))
                for i, ms in points]
    solution = least_squares(residuals, np.log(np.full(len(kinds), 0.15)), bounds=(-8, 3))
    rates = dict(zip(kinds, np.exp(solution.x), strict=True))
    return rates, [math.expm1(r) for r in residuals(solution.x)]


def scale_for(proxy, points, rates, clock_mhz, bytes_per_cycle, overhead):
    """One factor on `rates` so that the proxy's time per MAC matches published (MACs, ms) points."""
    per_mac = cycles(proxy, rates, bytes_per_cycle, overhead) / proxy.macs
    measured = [ms * 1e-3 * clock_mhz * 1e6 / macs for _, macs, ms in points]
    return float(np.exp(np.mean(np.log([per_mac / m for m in measured]))))


def main() -> dict:
    result: dict = {}
    # 1. Cortex-M4, 2020 kernels: three per-kind rates from the four L4R5 points.
    l4r5 = [(info(spec), ms) for spec, _, ms in L4R5_POINTS]
    for (spec, macs, _), (i, _) in zip(L4R5_POINTS, l4r5, strict=True):
        assert i.macs == macs, (spec, i.macs, macs)
    m4_2020, m4_residuals = fit_rates(l4r5, 120, MCU_BYTES_PER_CYCLE["Cortex-M4"], MCU_OP_OVERHEAD)
    result["cortex-m4-cmsis-nn-2020"] = {"rates": m4_2020, "residuals": dict(zip(
        ["kws", "vww", "ic", "ad"], m4_residuals, strict=True))}

    # 2. Cortex-M7, 2022 kernels: one factor over the M4 rates, from the H743 MCUNet points, with the
    #    MLPerf VWW MobileNetV1 as the proxy for MCUNet's depthwise-separable op mix.
    vww = info(VWW)
    m7_scale = scale_for(vww, H743_CMSIS, m4_2020, 480, MCU_BYTES_PER_CYCLE["Cortex-M7"], MCU_OP_OVERHEAD)
    m7 = {k: v * m7_scale for k, v in m4_2020.items()}
    core = COREMARK_PER_MHZ["Cortex-M7"] / COREMARK_PER_MHZ["Cortex-M4"]
    kernels = m7_scale / core
    m4_now = {k: v * kernels for k, v in m4_2020.items()}
    m7_residuals = {name: cycles(vww, m7, 2.0, MCU_OP_OVERHEAD) / vww.macs * macs / (ms * 1e-3 * 480e6) - 1
                    for name, macs, ms in H743_CMSIS}
    result["cortex-m7-cmsis-nn-2022"] = {"rates": m7, "scale_over_m4_2020": m7_scale, "residuals": m7_residuals}
    result["cortex-m4-cmsis-nn-2022"] = {"rates": m4_now, "kernel_speedup_since_2020": kernels,
                                        "core_factor_m7_over_m4": core}

    # 3. Reference kernels (no CMSIS-NN): one rate for every kind, from the H743 reference-kernel points.
    reference_scale = scale_for(vww, H743_REFERENCE, {k: 1.0 for k in MAC_KINDS}, 480, 2.0, MCU_OP_OVERHEAD)
    m7_reference = {k: 1.0 * reference_scale for k in MAC_KINDS}
    m0_reference = {k: v * COREMARK_PER_MHZ["Cortex-M0+"] / COREMARK_PER_MHZ["Cortex-M7"]
                    for k, v in m7_reference.items()}
    m4_reference = {k: v * COREMARK_PER_MHZ["Cortex-M4"] / COREMARK_PER_MHZ["Cortex-M7"]
                    for k, v in m7_reference.items()}
    result["cortex-m7-reference"] = {"rates": m7_reference}
    result["cortex-m4-reference"] = {"rates": m4_reference}
    result["cortex-m0plus-reference"] = {"rates": m0_reference}

    # 4. LiteRT + XNNPACK, 4 threads. First the per-op overhead (operator dispatch, thread-pool hand-off),
    #    which only shows on small models: fitted with one conv rate per precision on the Pixel 3's
    #    MobileNetV1 1.0 224 and 0.25 128 pair. Then, with that overhead, one conv rate per precision per
    #    target from its MobileNetV1 1.0 224 point; the other kinds at fixed ratios (LITERT_RELATIVE).
    pixel3 = [(precision, info(spec, precision), ms) for precision, pts in PIXEL3.items() for spec, ms in pts]

    def pixel3_residuals(x):
        rates = {"int8": math.exp(x[0]), "float32": math.exp(x[1])}
        return [math.log(cycles(i, {k: v * rates[p] for k, v in LITERT_RELATIVE.items()}, LITERT_BYTES_PER_CYCLE,
                                math.exp(x[2])) / (ms * 1e-3 * 2800e6)) for p, i, ms in pixel3]
    fitted = least_squares(pixel3_residuals, [math.log(20), math.log(8), math.log(5000)])
    overhead = math.exp(fitted.x[2])
    result["litert_op_overhead"] = {"cycles": overhead, "pixel3_residuals": [math.expm1(r) for r in
                                                                             pixel3_residuals(fitted.x)]}
    litert_points = {
        "rpi4": {"int8": (24.0, 1500), "float32": (77.0, 1500)},  # XNNPACK README, Raspberry Pi 4, 64-bit
        "rpi-zero-2w": {"int8": (46.0, 1400), "float32": (114.0, 1400)},  # XNNPACK README, Pi 3B+ (A53)
        "android-midrange": {"int8": (5.0, 2420), "float32": (14.0, 2420)},  # TFLite benchmarks.md, Pixel 4
    }
    litert = {}
    for name, per_precision in litert_points.items():
        litert[name] = {}
        for precision, (ms, clock) in per_precision.items():
            model = info(MOBILENET_224, precision)
            scale = least_squares(lambda s, model=model, ms=ms, clock=clock: [math.log(cycles(
                model, {k: v * math.exp(s[0]) for k, v in LITERT_RELATIVE.items()}, LITERT_BYTES_PER_CYCLE,
                overhead) / (ms * 1e-3 * clock * 1e6))], [math.log(10.0)])
            litert[name][precision] = {k: v * math.exp(scale.x[0]) for k, v in LITERT_RELATIVE.items()}
    result["litert"] = litert
    result["mobilenet_v1_224_macs"] = info(MOBILENET_224).macs
    # 5. ESP32-S3 (ESP-NN, PIE SIMD): derived from the kernels' instruction counts, nothing fitted.
    result[esp_nn_rates.KEY] = esp_nn_rates.derive()
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
