"""The Cortex-A time model (edgekit.cycles_a64) and its fit (edgekit/toolchains/cpi_a64.json, written by
benchmarks/fit_cpi_a64.py): no emulator needed."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgekit import cycles_a64, targets
from edgekit.runtimes.emulated_a64 import LiteRTRun, SymbolCount

FIT = cycles_a64._fit()


def run(core: str = "cortex-a72", kernels: int = 900_000, other: int = 100_000, handoffs: int = 5) -> LiteRTRun:
    symbols = (SymbolCount("xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_1x8c8__neon_mlal", "lib.so", kernels),
               SymbolCount("_ZN6tflite8Subgraph10InvokeImplEv", "lib.so", other),
               SymbolCount("pthreadpool_parallelize_2d", "lib.so", 0, handoffs))
    return LiteRTRun(core, kernels + other, kernels + other, 1000, 10 ** 9, "00", "int8", (1, 1), 1.0, 0, "qemu",
                     {"litert": "2.3.0"}, (), 1, 3, symbols)


def test_the_split_and_the_hand_offs_come_from_the_symbols():
    counted = run()
    assert cycles_a64.split_instructions(counted.per_symbol, counted.instructions) == (900_000, 100_000)
    assert cycles_a64.parallelized_ops(counted.per_symbol) == 5
    assert cycles_a64.is_parallel("xnn_compute_gemm") and not cycles_a64.is_parallel("xnn_invoke_runtime")


def test_one_thread_is_instructions_times_cpi_and_more_threads_share_only_the_kernels():
    model = cycles_a64.Threads(spread=0.1, hand_off=1000, error_factor=1.0, method="")
    assert cycles_a64.cycles(2.0, 100, 900, 5, 1, model) == 2.0 * 1000
    four = cycles_a64.cycles(2.0, 100, 900, 5, 4, model)
    assert four == pytest.approx(2.0 * (100 + 900 * 1.3 / 4 + 5 * 3 * 1000))
    assert cycles_a64.cycles(2.0, 100, 900, 0, 4, model) < cycles_a64.cycles(2.0, 100, 900, 0, 1, model)


def test_the_estimate_is_for_the_profiles_clock_and_threads():
    rpi4 = targets.load("rpi4")
    estimate = cycles_a64.litert_latency(run(), rpi4, "int8")
    cpi = FIT["cores"]["cortex-a72"]["cpi"]["int8"]
    threads = cycles_a64.thread_model()
    expected = cycles_a64.cycles(cpi, 100_000, 900_000, 5, 4, threads) / (rpi4.cpu.clock_mhz * 1e3)
    assert estimate.threads == 4 and estimate.ms == pytest.approx(expected)
    assert estimate.basis == "emulated" and estimate.low_ms < estimate.ms < estimate.high_ms
    assert estimate.emulation["ms_by_threads"]["1"] == pytest.approx(cpi * 1_000_000 / (rpi4.cpu.clock_mhz * 1e3))
    # a small model: the hand-offs outweigh the work they share, and the figure is for one thread, said so
    small = cycles_a64.litert_latency(run(kernels=9_000, other=1_000), rpi4, "int8")
    assert small.threads == 1 and small.emulation["profile_threads"] == 4
    assert small.ms == min(small.emulation["ms_by_threads"].values()) and "the fastest for this model" in small.method
    # half the clock, twice the time; one core, one thread; float32 kernels have their own CPI
    slower = dataclasses.replace(rpi4, cpu=dataclasses.replace(rpi4.cpu, clock_mhz=900))
    assert cycles_a64.litert_latency(run(), slower, "int8").ms == pytest.approx(2 * estimate.ms)
    single = dataclasses.replace(rpi4, cpu=dataclasses.replace(rpi4.cpu, cores=1), latency=None)
    assert cycles_a64.litert_latency(run(), single, "int8").threads == 1
    float_cpi = FIT["cores"]["cortex-a72"]["cpi"]["float32"]
    assert cycles_a64.litert_latency(run(), rpi4, "float16").ms == pytest.approx(expected * float_cpi / cpi)


def test_the_band_widens_with_the_serial_share():
    rpi4 = targets.load("rpi4")
    kernels = cycles_a64.litert_latency(run(kernels=999_000, other=1_000), rpi4, "int8")
    interpreter = cycles_a64.litert_latency(run(kernels=1_000, other=999_000), rpi4, "int8")
    band = FIT["cores"]["cortex-a72"]["error_factor"]
    assert kernels.error_factor == pytest.approx(band, rel=0.01)
    assert interpreter.error_factor == pytest.approx(band * cycles_a64.SERIAL_WIDENING, rel=0.01)


def test_the_fit_reproduces_its_points_within_its_bands():
    """Every published point the fit used lies within its core's band of what the model gives for it."""
    for point in FIT["points"]:
        band = FIT["cores"][point["core"]]["error_factor"]
        ratio = point["predicted_ms"] / point["published_ms"]
        assert 1 / band <= ratio <= band, point
    for pair in FIT["thread_pairs"]:
        assert abs(math.log(pair["residual"])) <= math.log(FIT["threads"]["error_factor"]) + 1e-9, pair


def test_every_core_has_a_cpi_per_kernel_family_and_says_how():
    for core in ("cortex-a53", "cortex-a72", "cortex-a76", "cortex-a720"):
        entry = FIT["cores"][core]
        assert set(entry["cpi"]) == {"float32", "int8"} and all(0.2 < v < 5 for v in entry["cpi"].values())
        assert entry["basis"] in ("fitted", "derived") and entry["error_factor"] > 1 and entry["method"]
    assert FIT["cores"]["cortex-a720"]["basis"] == "derived"


def test_the_python_binding_is_left_out_of_the_figure():
    counted = run()
    with_python = dataclasses.replace(counted, instructions=counted.instructions + 5_000, per_symbol=(
        *counted.per_symbol, SymbolCount("python3.11", "python3.11", 4_000),
        SymbolCount("_ZN8pybind1112cpp_function10dispatcherEP7_objectS2_S2_", "lib.so", 1_000)))
    rpi4 = targets.load("rpi4")
    plain, called = (cycles_a64.litert_latency(r, rpi4, "int8") for r in (counted, with_python))
    assert called.ms == pytest.approx(plain.ms) and called.instructions == plain.instructions
    assert called.emulation["binding_instructions"] == 5_000
    assert any(k["kernel"] == cycles_a64.BINDING and k["instructions"] == 5_000 for k in called.emulation["kernels"])


def test_the_profile_tables_and_the_runtime_name_the_same_cores():
    """targets reads the Cortex-A names from toolchains.cores (cheap to import); toolchains.aarch64 runs them."""
    from edgekit.toolchains import aarch64, cores

    assert set(cores.A_CORES) == set(aarch64.CORES) == set(cores.A_PROFILE_DEFAULTS) == set(FIT["cores"])
    assert set(cores.A_ALIASES.values()) <= set(cores.A_CORES)
