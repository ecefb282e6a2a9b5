"""Run a .tflite model on an emulated Cortex-M core: the real TensorFlow Lite Micro and CMSIS-NN, compiled
for the core, in the program `edgekit export` writes, on QEMU's model of an Arm board, counting the
instructions the core executes per op.

What comes back is counted, not timed: executed instructions in the application's timed window (one
`Invoke()` and the input copy) and per op (TFLite Micro's profiler events), exact and the same on every
run; the tensor arena the 32-bit allocator used (`arena_used_bytes()`, with CMSIS-NN's scratch buffers);
and the output bytes, which must equal the host TFLite Micro runtime's for the run to count. Turning
instructions into milliseconds is `edgekit.latency`'s job (a fitted cycles-per-instruction), not this one's.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import StageError
from edgekit.toolchains import qemu, sources, tools
from edgekit.toolchains.cores import Core

STAGE = "emulation"


class SetupFailed(StageError):
    """The program ran but TFLite Micro did not set the model up (AllocateTensors or a kernel's Prepare);
    `log` is what TFLite Micro printed about it."""

    def __init__(self, reason: str, log: str):
        super().__init__(STAGE, reason)
        self.log = log
# Float kernels on the core round differently from the host's (fused multiply-add, newlib's expf): values,
# not bytes, are compared for float outputs. Integer outputs must be byte-identical.
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-6
STACK_AND_HEAP = 192 << 10  # RAM kept out of the default arena: stack, heap (stdio buffers), .data, the event log


@dataclass(frozen=True)
class OpCount:
    index: int  # position in subgraph 0's execution order
    op: str
    instructions: int


@dataclass(frozen=True)
class EmulatedRun:
    core: str
    board: str
    instructions: int  # the timed window of the first run: one Invoke() and the input copy
    per_op: tuple[OpCount, ...]
    arena_bytes: int  # arena_used_bytes() on the 32-bit core
    arena_given_bytes: int  # the arena constant the program was built with
    output_matches: bool  # output bytes identical to the host TFLite Micro runtime's
    output_max_diff: float  # largest difference from the host's output values
    output_ok: bool  # integer outputs: identical bytes; float: within FLOAT_RTOL / FLOAT_ATOL of the host's
    output_hex: str
    qemu: str
    compiler: str
    sources: dict[str, str]  # tflite-micro, cmsis_nn, ... -> commit
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emulable_core(target) -> Core | None:
    """The core a microcontroller target's `cpu.core` is emulated as; None for other targets and cores
    (Xtensa, RISC-V: they keep a cost model)."""
    from edgekit.toolchains.cores import emulated_core

    return emulated_core(target.cpu.core) if target.device_class == "mcu" else None


def core_for(target) -> Core | None:
    """`emulable_core(target)` when the cross compiler and QEMU are installed, else None (see `unavailable`)."""
    return emulable_core(target) if not tools.missing() else None


def unavailable(target) -> str | None:
    """One line on why a target that could be emulated is not (tools missing), or None."""
    missing = tools.missing()
    if emulable_core(target) is None or not missing:
        return None
    return f"not emulated: {tools.install_hint(missing)}; the latency shown is the cost model's estimate"


def checked(run: EmulatedRun, model: Path) -> EmulatedRun:
    """`run`, when its output equals the host runtime's (integer: the bytes; float: the values within
    FLOAT_RTOL); a StageError otherwise."""
    if not run.output_ok:
        raise StageError(STAGE, f"{Path(model).name} on an emulated {run.core} gave output {run.output_hex[:32]} where "
                                f"the host TFLite Micro runtime gave other values (largest difference "
                                f"{run.output_max_diff:.3g}): the run does not count")
    return run


def default_arena(core: Core) -> int:
    return (core.ram.length - STACK_AND_HEAP) // 16 * 16


def run_model(model: Path, core: Core, raw_input: np.ndarray, expected: np.ndarray, arena_bytes: int | None = None,
              arena_note: str = "", timeout: float = 120, keep: Path | None = None) -> EmulatedRun:
    """Build the bundle's program for `model` (the arena `arena_bytes`, default: what the board's RAM leaves)
    and run it once on `core`. `raw_input` is the model's input in its own type, `expected` the host TFLite
    Micro output for it. `keep`: a folder to build in (and leave), else a temporary one."""
    from edgekit.export.mcu import program_sources
    from edgekit.model_info import tflite_graph_ops
    from edgekit.toolchains import firmware, tflm_library

    started = time.perf_counter()
    arena = arena_bytes or default_arena(core)
    files = program_sources(Path(model).read_bytes(), tflite_graph_ops(model), "g_model", raw_input, expected, arena,
                            arena_note or f"edgekit's emulated {core.name} run: {arena} bytes offered.")
    library = tflm_library.library(core)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(keep) if keep else Path(scratch)
        elf = firmware.build_program(library, files, folder)
        run = qemu.run(core, elf, timeout=timeout)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    error = next((line["error"] for line in lines if "error" in line), None)
    if error:
        log = " ".join(line.strip() for line in run.stderr.splitlines() if line.strip())
        raise SetupFailed(f"{Path(model).name} on an emulated {core.name}: {log or error}", log)
    first = next((line for line in lines if line.get("run") == 0), None)
    events = next((line for line in lines if "edgekit_events" in line), None)
    output = next((line["output_hex"] for line in lines if "output_hex" in line), None)
    if first is None or events is None or output is None:
        raise StageError(STAGE, f"{Path(model).name} on an emulated {core.name} stopped before its first run "
                                f"finished (exit status {run.exit_status})")
    if events["lost"] or len(events["edgekit_events"]) != len(run.marks):
        raise StageError(STAGE, f"{len(run.marks)} counts for {len(events['edgekit_events'])} events: the "
                                "instruction counts cannot be paired with the ops")
    instructions, per_op = _window(events["edgekit_events"], run.marks)
    host = np.ascontiguousarray(expected)
    exact = output == host.tobytes().hex()
    values = np.frombuffer(bytes.fromhex(output), host.dtype) if len(output) == 2 * host.nbytes else None
    diff = float(np.abs(values.astype(np.float64) - host.ravel()).max()) if values is not None and values.size else \
        (0.0 if exact else float("inf"))
    ok = exact or (host.dtype.kind == "f" and values is not None and
                   bool(np.allclose(values, host.ravel(), rtol=FLOAT_RTOL, atol=FLOAT_ATOL)))
    return EmulatedRun(core.name, core.board, instructions, per_op, int(first["arena_used"]), arena, exact, diff, ok,
                       output, run.qemu,
                       tools.version(tools.require("arm-none-eabi-g++")), sources.commits(),
                       time.perf_counter() - started)


def _window(events: list[str], marks: tuple[int, ...]) -> tuple[int, tuple[OpCount, ...]]:
    """The first timed window (between the first two timer reads) and its top-level ops."""
    timers = [i for i, event in enumerate(events) if event == "T"]
    if len(timers) < 2:
        raise StageError(STAGE, "the program read its timer fewer than twice: no timed window to count")
    start, end = timers[0], timers[1]
    per_op: list[OpCount] = []
    depth, begun, op = 0, 0, ""
    for i in range(start + 1, end):
        if events[i].startswith("B:"):
            if depth == 0:
                begun, op = i, events[i][2:]
            depth += 1
        elif events[i] == "E":
            depth -= 1
            if depth == 0:
                per_op.append(OpCount(len(per_op), op, marks[i] - marks[begun]))
    return marks[end] - marks[start], tuple(per_op)


def smallest_arena(model: Path, core: Core, raw_input: np.ndarray, expected: np.ndarray, used: int,
                   note: str = "", refine: int = 3) -> EmulatedRun:
    """The run of the program built with the smallest arena constant found to load the model on the core.
    `used` (arena_used_bytes() of a run with room to spare) is not always enough: kernels take temporary
    buffers while they prepare, and a resource variable's buffer is sized at its first use. So: try `used`,
    grow by a quarter (or what TFLite Micro says is missing) until the program loads, then bisect `refine`
    times between the last size that failed and the smallest that loaded. Every size returned has run."""
    faults: list[str] = []

    def attempt(arena: int) -> EmulatedRun | None:
        try:
            return run_model(model, core, raw_input, expected, arena_bytes=arena, arena_note=note.format(arena=arena))
        except SetupFailed:  # it loaded with room to spare, so at this size the arena is what failed
            return None
        except qemu.Fault as fault:  # TFLite Micro can fault on an arena a few bytes short (measured: a dense
            faults.append(fault.reason)  # model faulted at 1,120-1,132 bytes and loaded from 1,420)
            return None

    failed, arena = 0, _round(used)
    run = attempt(arena)
    while run is None:
        failed = arena
        arena = _round(max(arena * 1.25, arena + 64))
        if arena > default_arena(core):
            raise StageError(STAGE, f"{Path(model).name}: no arena up to {default_arena(core)} bytes loaded on the "
                                    f"emulated {core.name}" + (f" (the last fault: {faults[-1]})" if faults else ""))
        run = attempt(arena)
    for _ in range(refine):
        middle = _round((failed + run.arena_given_bytes) / 2)
        if middle >= run.arena_given_bytes or middle <= failed:
            break
        smaller = attempt(middle)
        if smaller is None:
            failed = middle
        else:
            run = smaller
    return run


def _round(size: float) -> int:
    return math.ceil(size / 16) * 16
