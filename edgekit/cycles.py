"""Target latency from instructions counted on an emulated core:

    ms = instructions x cycles-per-instruction(core) / clock

The instructions are exact (edgekit.runtimes.emulated counts what the emulated core executes in one
inference); only the cycles per instruction (CPI) are fitted, per core, on published measurements
(`benchmarks/fit_cpi.py`, which writes `edgekit/toolchains/cpi.json` with each core's CPI, how it was
obtained, and its error band from the leave-one-out residuals; a core without a published point gets a
derived CPI, and says so). The band is multiplicative: the truth is expected within ms / f .. ms x f.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from edgekit.estimate import LatencyEstimate, OpEstimate

if TYPE_CHECKING:
    from edgekit.model_info import ModelInfo
    from edgekit.runtimes.emulated import EmulatedRun
    from edgekit.targets import Target

CPI_FILE = "cpi.json"


@dataclass(frozen=True)
class CoreCpi:
    core: str
    cpi: float
    error_factor: float  # multiplicative band
    basis: str  # fitted | derived
    method: str


@functools.cache
def _fit() -> dict:
    return json.loads((resources.files("edgekit.toolchains") / CPI_FILE).read_text())


def cpi_table() -> dict[str, CoreCpi]:
    return {name: CoreCpi(name, entry["cpi"], entry["error_factor"], entry["basis"], entry["method"])
            for name, entry in _fit()["cores"].items()}


def core_cpi(profile_core: str, emulated_as: str) -> CoreCpi:
    """The CPI of a profile's core: its own entry when it has one (Cortex-M85), else the core it runs as."""
    table = cpi_table()
    key = next((name for name in table if name.lower() == profile_core.strip().lower()), emulated_as)
    return table[key]


def emulated_latency(run: EmulatedRun, info: ModelInfo, target: Target, precision: str) -> LatencyEstimate:
    """The target latency of one inference from an emulated run of the model (`run`) on the target's core."""
    cpi = core_cpi(target.cpu.core, run.core)
    per_cycle_ms = cpi.cpi / (target.cpu.clock_mhz * 1e3)
    ops = info.ops if len(info.ops) == len(run.per_op) else ()
    per_op = tuple(OpEstimate(op.index, op.op, ops[op.index].kind if ops else "other",
                              ops[op.index].macs if ops else 0, ops[op.index].bytes if ops else 0,
                              op.instructions * per_cycle_ms, "counted", op.instructions) for op in run.per_op)
    ms = run.instructions * per_cycle_ms
    runs_as = "" if run.core.lower() in target.cpu.core.lower() else f" (runs {run.core} code)"
    return LatencyEstimate(
        ms=ms, low_ms=ms / cpi.error_factor, high_ms=ms * cpi.error_factor, precision=precision, threads=1,
        runtime="TFLite Micro with CMSIS-NN (tflite-micro " + run.sources["tflite-micro"][:7] + ", CMSIS-NN "
                + run.sources["cmsis_nn"][:7] + ")",
        expected_error=cpi.error_factor - 1,
        method=(f"{run.instructions:,} instructions counted on an emulated {run.core}{runs_as} (QEMU {run.board}, "
                f"the bundle's own program), x {cpi.cpi:.3g} cycles per instruction ({cpi.method}) "
                f"/ {target.cpu.clock_mhz:g} MHz"),
        per_op=per_op, basis="emulated", instructions=run.instructions, error_factor=cpi.error_factor,
        emulation={"core": run.core, "board": run.board, "qemu": run.qemu, "compiler": run.compiler,
                   "sources": run.sources, "cpi": cpi.cpi, "cpi_basis": cpi.basis,
                   "arena_bytes": run.arena_bytes, "output_matches": run.output_matches,
                   "output_max_diff": run.output_max_diff},
    )


def estimate_without_emulator(info: ModelInfo, target: Target, precision: str, emulated_as: str,
                              reason: str) -> LatencyEstimate | None:
    """Where the emulator is missing: the instructions estimated from each op's MACs (instructions per MAC
    by op kind, per byte for the other ops, as counted for the MLPerf Tiny references on the emulated core),
    times the same CPI. int8 only (the references are int8): None for other precisions, not a guess."""
    rates = _fit().get("instructions_int8", {}).get(emulated_as)
    if precision != "int8" or rates is None:
        return None
    cpi = core_cpi(target.cpu.core, emulated_as)
    per_cycle_ms = cpi.cpi / (target.cpu.clock_mhz * 1e3)
    per_op = []
    for op in info.ops:
        instructions = op.macs * rates["per_mac"][op.kind] if op.macs and op.kind in rates["per_mac"] else \
            op.bytes * rates["per_byte"]
        per_op.append(OpEstimate(op.index, op.op, op.kind, op.macs, op.bytes, instructions * per_cycle_ms, "scaled"))
    ms = sum(op.ms for op in per_op)
    factor = cpi.error_factor * rates["error_factor"]
    return LatencyEstimate(
        ms=ms, low_ms=ms / factor, high_ms=ms * factor, precision=precision, threads=1,
        runtime="TFLite Micro with CMSIS-NN (not run: estimated)", expected_error=factor - 1,
        method=(f"{reason}. Estimated: instructions from each op's MACs and bytes at the rates counted on an emulated "
                f"{emulated_as} for the MLPerf Tiny references (x/÷{rates['error_factor']:.2g} leave-one-out), x "
                f"{cpi.cpi:.3g} cycles per instruction ({cpi.basis}) / {target.cpu.clock_mhz:g} MHz"),
        per_op=tuple(per_op), error_factor=factor)
