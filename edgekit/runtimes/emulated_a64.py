"""A .tflite model in the real LiteRT runtime (ai-edge-litert's aarch64 wheel, XNNPACK) on an emulated Cortex-A
core: `qemu-aarch64 -L CORE_ROOT -cpu CORE python3.11 litert_runner.py ...` (see edgekit.toolchains.aarch64
for the sysroot), counted by edgekit's user-mode plugin.

The runner warms the interpreter up, then marks the start and the end of ONE invoke with a system call the
plugin watches; it marks an empty window the same way, and `instructions` is the invoke's window less the
empty one (what marking itself costs, about a thousand instructions of Python). The count is the emulated
core's instruction stream as LiteRT runs it there: XNNPACK's kernels for that core's features, and the
interpreter's own work, with one thread unless `threads` says otherwise. It is not a time: that takes a CPI
and a clock.

`memory` is the interpreter's own heap inside the emulated process, from glibc's mallinfo2 (bytes in use:
uordblks + hblkhd), as net growths in bytes (what was freed again within a step is not seen); unlike a host
process's RSS rise it holds no code pages. Its keys:

- interpreter_bytes: Interpreter(model_path=...): the parsed graph, tensors and op registrations. The .tflite
  file is mapped, not copied (a 17 KB and a 3 KB model grow the heap alike, ~105 KB).
- allocate_bytes: allocate_tensors(), where LiteRT applies its default XNNPACK delegate: TFLite's arena for
  what XNNPACK leaves to it, XNNPACK's packed weights (~1.8x the raw int8 weights of a conv), its operators
  and its workspace for the delegated intermediates. Not the tensor arena alone.
- first_invoke_bytes, warmup_bytes: the first invoke, and the other warm-ups (tens of bytes with XNNPACK).
- total_bytes: the sum of the four.
- outside_malloc_bytes: growth of the process's writable anonymous mappings over the same span less the growth
  of malloc's own: what the heap counters cannot see (0 measured: XNNPACK allocates with posix_memalign).
- model_file_bytes, model_mapped_bytes: the .tflite's size, and how much of it is mapped after Interpreter().
- tensor_bytes_largest, tensor_bytes_all_intermediate, tensor_bytes_constant: the largest non-constant tensor
  (the model's inputs and every op's outputs), their sum, and the sum of the other (constant) tensors.

No peak RSS of the guest is reported: under qemu-aarch64, /proc/self/status and getrusage are the host QEMU
process's.
"""

from __future__ import annotations

import bisect
import functools
import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import StageError
from edgekit.toolchains import aarch64

STAGE = "emulation"
MAGIC = 0xED6E0000  # lseek offsets MAGIC + 1..4 mark the windows (see board/litert_runner.py)
LSEEK = 62  # aarch64 Linux's lseek
RUNNER = aarch64.BOARD / "litert_runner.py"
WARMUP = 3  # invokes before the counted one (a recurrent state is fed back after each)


@dataclass(frozen=True)
class SymbolCount:
    symbol: str
    library: str
    instructions: int
    calls: int = 0  # executions of the block at the symbol's own address: the calls (0 for a library's name)


@dataclass(frozen=True)
class LiteRTRun:
    core: str
    instructions: int  # of the one timed invoke: its window less the empty window
    window_instructions: int  # between the two marks around the invoke
    mark_instructions: int  # between two marks around nothing
    total_instructions: int  # the whole emulated process
    output_hex: str
    output_dtype: str
    output_shape: tuple[int, ...]
    wall_s: float  # the host's wall time of the whole emulated run
    guest_invoke_ns: int  # the guest's clock around the timed invoke (emulated, so not a target time)
    qemu: str
    versions: dict[str, str]  # python, numpy, litert inside the emulator
    wheels: tuple[str, ...]
    threads: int
    warmup: int
    per_symbol: tuple[SymbolCount, ...] = field(default=())  # with symbols=True; largest first
    memory: dict[str, int] = field(default_factory=dict)  # the heap in bytes (see the module's docstring)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_litert(model_path: Path, core: str, raw_input: np.ndarray | bytes | dict[str, np.ndarray],
               warmup: int = WARMUP, threads: int = 1, symbols: bool = False, timeout: float = 600,
               state: Sequence[tuple[str, str]] = ()) -> LiteRTRun:
    """Run `model_path` on an emulated `core` (cortex-a53, cortex-a72, cortex-a76, cortex-a720) with
    `raw_input` as its first input's bytes, or (a dict) every input by tensor name, each (input, output) pair of
    `state` fed back after every warm-up invoke; count the instructions of one invoke after `warmup` ones."""
    model_path = Path(model_path).resolve()
    spec = aarch64.core(core)
    qemu, plugin = aarch64.qemu(), aarch64.plugin()
    root = aarch64.core_root(spec.name)
    with tempfile.TemporaryDirectory() as scratch:
        counts = Path(scratch) / "counts.json"
        if isinstance(raw_input, dict):
            given = Path(scratch) / "inputs.npz"
            arrays: dict[str, Any] = {**raw_input, "__state__": np.array([f"{i}={o}" for i, o in state], dtype=str)}
            np.savez(given, **arrays)
        else:
            given = Path(scratch) / "input.bin"
            given.write_bytes(raw_input.tobytes() if isinstance(raw_input, np.ndarray) else bytes(raw_input))
        options = f"out={counts},syscall={LSEEK},magic={MAGIC:#x}" + (",symbols=1" if symbols else "")
        command = [qemu, "-L", str(root), "-cpu", spec.qemu_cpu, "-plugin", f"{plugin},{options}",
                   str(root / aarch64.PYTHON), "-I", str(RUNNER), str(model_path), str(given), str(warmup),
                   str(threads), hex(MAGIC), *(["maps"] if symbols else [])]
        started = time.monotonic()
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StageError(STAGE, f"{model_path.name} on an emulated {spec.name} did not finish within "
                                    f"{timeout:.0f} s") from None
        wall = time.monotonic() - started
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines or not counts.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise StageError(STAGE, f"{model_path.name} on an emulated {spec.name} (LiteRT under qemu-aarch64) "
                                    f"stopped with exit status {result.returncode}: {last}")
        report, counted = json.loads(lines[-1]), json.loads(counts.read_text())
    marks = {tag: count for tag, count in reversed(counted["marks"])}  # the first mark of each tag
    if not {1, 2, 3, 4} <= set(marks):
        raise StageError(STAGE, f"the counting plugin saw marks {sorted(marks)}, not the four the runner makes")
    window, empty = marks[2] - marks[1], marks[4] - marks[3]
    per_symbol = _per_symbol(counted.get("blocks", []), report.get("maps", {}), root) if symbols else ()
    return LiteRTRun(spec.name, window - empty, window, empty, counted["total"], report["output_hex"],
                     report["dtype"], tuple(report["shape"]), round(wall, 3), report["guest_ns"],
                     aarch64.qemu_version(),
                     {name: report[name] for name in ("python", "numpy", "litert")},
                     tuple(aarch64.manifest()["wheels"]), threads, warmup, per_symbol,
                     {name: int(value) for name, value in report.get("memory", {}).items()})


def _per_symbol(blocks: list[list[int]], maps: dict[str, int], root: Path) -> tuple[SymbolCount, ...]:
    """Each counted block's instructions, given to the symbol its first instruction lies in (the libraries'
    .symtab, read with nm; a block in a library without symbols, or outside every library, counts under
    the library's name or "?")."""
    nm = shutil.which("nm")
    bases = sorted((base, path) for path, base in maps.items())
    starts = [base for base, _ in bases]
    tables: dict[str, tuple[list[int], list[str]]] = {}
    totals: Counter[tuple[str, str]] = Counter()
    calls: Counter[tuple[str, str]] = Counter()
    for pc, instructions, *executions in blocks:
        index = bisect.bisect_right(starts, pc) - 1
        if index < 0:
            totals[("?", "?")] += instructions
            continue
        base, path = bases[index]
        library = Path(path).name
        if path not in tables:
            tables[path] = _symbols(nm, Path(path), root)
        addresses, names = tables[path]
        at = bisect.bisect_right(addresses, pc - base) - 1
        key = (names[at] if at >= 0 else library, library)
        totals[key] += instructions
        if at >= 0 and executions and addresses[at] == pc - base:
            calls[key] += executions[0]
    return tuple(SymbolCount(symbol, library, count, calls[(symbol, library)])
                 for (symbol, library), count in totals.most_common())


@functools.cache
def _symbols(nm: str | None, path: Path, root: Path) -> tuple[list[int], list[str]]:
    host = path if path.is_file() else root / str(path).lstrip("/")
    if nm is None or not host.is_file():
        return [], []
    result = subprocess.run([nm, "--defined-only", "--no-demangle", str(host)], capture_output=True, text=True)
    if result.returncode or not result.stdout.strip():
        result = subprocess.run([nm, "-D", "--defined-only", "--no-demangle", str(host)], capture_output=True,
                                text=True)
    table = sorted({(int(fields[0], 16), fields[2]) for fields in (line.split() for line in result.stdout.splitlines())
                    if len(fields) == 3 and fields[1] in "tTwWiI"})
    return [address for address, _ in table], [name for _, name in table]


def unavailable() -> str | None:
    """One line on why LiteRT cannot run on an emulated core here (a tool missing), or None."""
    missing = aarch64.missing()
    if not missing:
        return None
    from edgekit.toolchains import tools

    return f"not emulated: {tools.install_hint(missing)}"


def compare(run: LiteRTRun, host_output: np.ndarray | None) -> str:
    """How the emulated run's output compares with this host's LiteRT for the same input, in words."""
    if host_output is None:
        return "output not compared"
    got = np.frombuffer(bytes.fromhex(run.output_hex), np.dtype(run.output_dtype))
    expected = np.asarray(host_output).ravel()
    if got.shape == expected.shape and got.tobytes() == expected.astype(got.dtype).tobytes():
        return "output bytes identical to this host's LiteRT"
    if got.shape != expected.shape:
        return f"output of {got.size} values where this host's LiteRT gives {expected.size}"
    diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
    unit = " (quantized steps)" if got.dtype.kind in "iu" else ""
    return f"output within {diff:.2g}{unit} of this host's LiteRT (largest difference)"


RUNS_RECIPE = 1  # bump when what a cached run records changes


def counted_run(model_path: Path, core: str, raw_input: np.ndarray | dict[str, np.ndarray], symbols: bool = True,
                state: Sequence[tuple[str, str]] = ()) -> LiteRTRun:
    """`run_litert` with one thread and the default warm-up, cached on disk (EDGEKIT_CACHE_DIR/a64-runs) under
    everything the count depends on: the model's and the inputs' bytes (and the state pairs), the core and its
    cpuinfo, the sysroot, the plugin and the runner. A model benchmarked again (a resumed build, the same file
    on another target of the same core) is not run again."""
    import hashlib

    from edgekit._files import write_atomic
    from edgekit.toolchains import sources

    model_path = Path(model_path)
    if isinstance(raw_input, dict):
        raw = json.dumps([[name, str(v.dtype), list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()]
                          for name, v in raw_input.items()] + [list(pair) for pair in state]).encode()
    else:
        raw = raw_input.tobytes()
    digest = hashlib.sha256()
    for part in (model_path.read_bytes(), raw, core.encode(), aarch64.core(core).cpuinfo().encode(),
                 aarch64.key().encode(), (aarch64.BOARD / "count_a64_plugin.c").read_bytes(), RUNNER.read_bytes(),
                 f"{RUNS_RECIPE} {symbols}".encode()):
        digest.update(hashlib.sha256(part).digest())
    path = sources.cache_root() / "a64-runs" / f"{digest.hexdigest()[:32]}.json"
    if path.is_file():
        try:
            return from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            path.unlink(missing_ok=True)  # written by another edgekit version: count again
    run = run_litert(model_path, core, raw_input, symbols=symbols, state=state)
    write_atomic(path, json.dumps(run.to_dict()))
    return run


def from_dict(data: dict[str, Any]) -> LiteRTRun:
    return LiteRTRun(**{**data, "output_shape": tuple(data["output_shape"]), "wheels": tuple(data["wheels"]),
                        "per_symbol": tuple(SymbolCount(**s) for s in data["per_symbol"])})


def memory_figures(run: LiteRTRun) -> dict[str, Any]:
    """The RAM fields an emulated run adds to a LiteRT target's figure (the host's resident-set rise stays the
    figure judged: it includes the runtime's code, which the device pays too): the interpreter's own heap on the
    emulated core, split by when it grew, and the model file the runtime maps."""
    memory = run.memory
    if not memory:
        return {}
    return {"heap": {key: memory[key] for key in ("interpreter_bytes", "allocate_bytes", "first_invoke_bytes",
                                                   "total_bytes", "model_mapped_bytes") if key in memory},
            "heap_core": run.core,
            "heap_method": (f"glibc's heap counters (mallinfo2: bytes in use) inside LiteRT's aarch64 process on an "
                            f"emulated {run.core}: interpreter_bytes while the interpreter loads the model (the file "
                            "is mapped, model_mapped_bytes, not copied), allocate_bytes in allocate_tensors() (the "
                            "tensor arena with XNNPACK's packed weights and workspace: XNNPACK packs at allocation, "
                            "so they cannot be told apart), first_invoke_bytes in the first invoke; total_bytes the "
                            "sum after the warm-up")}
