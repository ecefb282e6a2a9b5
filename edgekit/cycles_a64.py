"""Target latency on a phone or a Raspberry Pi from instructions counted on an emulated Cortex-A core
(edgekit.runtimes.emulated_a64: the real LiteRT and XNNPACK, aarch64 build, one thread):

    cycles(n threads) = CPI(core) x (serial + parallel x (1 + spread x (n - 1)) / n + ops x (n - 1) x hand_off)
    ms = cycles / clock

`parallel` is what XNNPACK's microkernels executed (pthreadpool spreads their tiles over the threads),
`serial` the rest of the invoke (the interpreter, the delegate's glue, ops LiteRT runs itself), both counted
with one thread; `ops` the times the invoke handed work to the thread pool (counted calls). `spread` (the share
of per-thread work lost to imbalance and shared caches and memory, per extra thread) and `hand_off` (instructions'
worth of time per hand-off and extra thread, waking and joining the workers: code that runs faster on a faster
core) are fitted on the published single- and
multi-threaded times of the same phones; CPI per core on the published multi-threaded
points of its class (`benchmarks/fit_cpi_a64.py`, which writes `edgekit/toolchains/cpi_a64.json` with each core's
CPI, how it was obtained and the multiplicative error band from the residuals). A core without a point of its
own has a derived CPI and says so.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from edgekit.estimate import LatencyEstimate

if TYPE_CHECKING:
    from edgekit.runtimes.emulated_a64 import LiteRTRun, SymbolCount
    from edgekit.targets import Target

CPI_FILE = "cpi_a64.json"
DEFAULT_THREADS = 4  # LiteRT's XNNPACK delegate as the profiles run it: 4 threads, or fewer where fewer cores
KERNELS_SHOWN = 12
BINDING = "Python binding (left out of the figure)"
SERIAL_WIDENING = 2.0  # edgekit's judgement, not fitted: see litert_latency


def is_parallel(symbol: str) -> bool:
    """XNNPACK's microkernels and the per-tile compute functions pthreadpool runs on every thread."""
    return symbol.startswith("xnn_") and ("ukernel" in symbol or symbol.startswith("xnn_compute_"))


def split_instructions(per_symbol: Iterable[SymbolCount], instructions: int) -> tuple[int, int]:
    """(parallel, serial) of an invoke's `instructions`, from its per-symbol counts."""
    parallel = min(sum(s.instructions for s in per_symbol if is_parallel(s.symbol)), instructions)
    return parallel, instructions - parallel


def is_binding(symbol: str, library: str) -> bool:
    """The Python side of the call: the interpreter running the runner's `invoke()` and pybind11's glue into
    LiteRT, which an app calling LiteRT from C++ (or Java, through its own thinner JNI glue) does not run."""
    return library.startswith(("python3", "libpython3")) or "pybind11" in symbol or "interpreter_wrapper" in symbol


def binding_instructions(per_symbol: Iterable[SymbolCount]) -> int:
    return sum(s.instructions for s in per_symbol if is_binding(s.symbol, s.library))


def parallelized_ops(per_symbol: Iterable[SymbolCount]) -> int:
    """How many times the invoke handed work to the thread pool: calls of pthreadpool's parallelize functions
    (one per XNNPACK operator that splits its work; ops the interpreter runs itself, and XNNPACK's copies, make
    none)."""
    return sum(s.calls for s in per_symbol if s.symbol.startswith("pthreadpool_parallelize"))


@dataclass(frozen=True)
class Threads:
    spread: float  # work added per extra thread, as a share of the parallel work
    hand_off: float  # instructions' worth per hand-off and extra thread (times the core's CPI: cycles)
    error_factor: float  # of the thread model alone, from its fit residuals
    method: str


@dataclass(frozen=True)
class CoreCpi:
    core: str  # the emulated core (edgekit's name)
    cpi: float  # for the kernels of one precision
    error_factor: float
    basis: str  # fitted | derived
    method: str


# The fit is per kernel family: float16 models run float kernels, int16x8 ones integer kernels.
CPI_PRECISION = {"float32": "float32", "float16": "float32", "int8": "int8", "int16x8": "int8"}


def cycles(cpi: float, serial: float, parallel: float, ops: int, threads: int, model: Threads) -> float:
    """The cycles of one inference on `threads` threads: the formula of this module's docstring."""
    extra = max(threads, 1) - 1
    return cpi * (serial + parallel * (1 + model.spread * extra) / (extra + 1) + ops * extra * model.hand_off)


@functools.cache
def _fit() -> dict[str, Any]:
    return json.loads((resources.files("edgekit.toolchains") / CPI_FILE).read_text())


def thread_model() -> Threads:
    entry = _fit()["threads"]
    return Threads(entry["spread"], entry["hand_off"], entry["error_factor"], entry["method"])


def core_cpi(core: str, precision: str) -> CoreCpi:
    entry = _fit()["cores"][core]
    return CoreCpi(core, entry["cpi"][CPI_PRECISION.get(precision, "float32")], entry["error_factor"], entry["basis"],
                   entry["method"])


def threads_for(target: Target) -> int:
    """The most threads LiteRT may run with on `target`: its cost model's count where it states one, else 4;
    never more than the cores."""
    wanted = target.latency.threads if target.latency and target.latency.threads else DEFAULT_THREADS
    return max(1, min(wanted, target.cpu.cores))


def kernels(run: LiteRTRun) -> list[dict[str, Any]]:
    """The invoke's instructions by kernel, largest first: each XNNPACK microkernel by name, the rest by library
    (the interpreter and delegate, Python, the C library); KERNELS_SHOWN rows at most, then "other"."""
    rows: dict[str, list[Any]] = {}
    for count in run.per_symbol:
        name = count.symbol if is_parallel(count.symbol) else BINDING if is_binding(count.symbol, count.library) \
            else f"{count.library} (not XNNPACK kernels)"
        row = rows.setdefault(name, [0, is_parallel(count.symbol)])
        row[0] += count.instructions
    ordered = sorted(rows.items(), key=lambda item: -item[1][0])
    shown = [{"kernel": name, "instructions": n, "threaded": threaded} for name, (n, threaded) in
             ordered[:KERNELS_SHOWN]]
    rest = sum(n for _, (n, _) in ordered[KERNELS_SHOWN:])
    if rest:
        shown.append({"kernel": f"{len(ordered) - KERNELS_SHOWN} other kernels and functions", "instructions": rest,
                      "threaded": False})
    return shown


def litert_latency(run: LiteRTRun, target: Target, precision: str) -> LatencyEstimate:
    """The target latency of one inference from `run` (counted with symbols) on `target`'s core and threads."""
    cpi, model = core_cpi(run.core, precision), thread_model()
    most = threads_for(target)
    binding = min(binding_instructions(run.per_symbol), run.instructions)
    instructions = run.instructions - binding
    parallel, serial = split_instructions(run.per_symbol, instructions)
    ops = parallelized_ops(run.per_symbol)
    # The thread count that runs this model fastest, up to the profile's: a small model's hand-offs can outweigh
    # the work they share, and one sets LiteRT's num_threads for it (the bundle's scripts take --threads).
    by_threads = {n: cycles(cpi.cpi, serial, parallel, ops, n, model) for n in range(1, most + 1)}
    threads = min(by_threads, key=lambda n: (by_threads[n], n))
    total = by_threads[threads]
    ms = total / (target.cpu.clock_mhz * 1e3)
    # The fit's points are MobileNets, whose serial share is under 0.1%: the interpreter's own code on the core is
    # unfitted, so the band widens with the serial share, up to x SERIAL_WIDENING for a model that is all of it.
    factor = cpi.error_factor * SERIAL_WIDENING ** (serial / max(instructions, 1))
    fewer = "" if threads == most else (
        f"; on {threads} of the profile's {most} threads, the fastest for this model (on {most}: "
        f"{by_threads[most] / (target.cpu.clock_mhz * 1e3):.3g} ms, the hand-offs to the thread pool outweighing "
        f"the work they share)")
    threading = fewer if threads == 1 else fewer + (
        f"; on {threads} threads the {parallel:,} instructions in XNNPACK's kernels are shared out with "
        f"{model.spread:.0%} added per extra thread and {model.hand_off:,.0f} instructions' worth for each of the "
        f"{ops} hand-offs to the thread pool and each extra thread (fitted: {model.method}), the {serial:,} others "
        f"run on one")
    return LatencyEstimate(
        ms=ms, low_ms=ms / factor, high_ms=ms * factor, precision=precision, threads=threads,
        runtime=f"LiteRT {run.versions.get('litert', '')} with XNNPACK, {threads} thread{'s' * (threads > 1)}",
        expected_error=factor - 1,
        method=(f"{instructions:,} instructions counted in one invoke of LiteRT's aarch64 build on an emulated "
                f"{run.core} ({run.qemu.split(' (')[0]}, one thread; the {binding:,} of the Python binding left out), "
                f"x {cpi.cpi:.3g} cycles per instruction of its {CPI_PRECISION.get(precision, 'float32')} kernels "
                f"({cpi.method}){threading}; / {target.cpu.clock_mhz:g} MHz"),
        per_op=(), basis="emulated", instructions=instructions, error_factor=factor,
        emulation={"core": run.core, "qemu": run.qemu, "runtime": f"ai-edge-litert {run.versions.get('litert')}",
                   "versions": run.versions, "cpi": cpi.cpi, "cpi_basis": cpi.basis, "clock_mhz": target.cpu.clock_mhz,
                   "threads": threads, "profile_threads": most,
                   "ms_by_threads": {str(n): c / (target.cpu.clock_mhz * 1e3) for n, c in by_threads.items()},
                   "parallel_instructions": parallel, "serial_instructions": serial,
                   "parallelized_ops": ops, "binding_instructions": binding,
                   "cycles": round(total), "kernels": kernels(run)},
    )
