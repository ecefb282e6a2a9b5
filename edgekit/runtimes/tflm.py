"""Run a .tflite file in the real TensorFlow Lite Micro runtime (PyPI `tflite-micro`) and report what it did.

For one model: whether the runtime loads and runs it (and, when it does not, which ops it lacks, named
by the runtime), the tensor arena the runtime recorded as used, the smallest arena it runs in, and on
request the output for one input and the host time of `invoke()`.

The runtime is native code, and a damaged model can crash it, so it always works in a child process
(`python -m edgekit.runtimes.tflm_child MODEL OPTIONS`, which writes JSON lines on stdout) under a timeout,
supervised by `edgekit.runtimes.child.run_child`: a crash, a hang or an unexpected exit becomes one
`StageError` line naming the file and what the runtime was doing. TensorFlow is never imported, in the
child or here. `measure` is the whole record for one model; `MicroRunner` is the same runtime behind the
Runner protocol (float predictions over a batch, raw outputs), for comparing it with the other runtimes.

Every figure comes from the runtime. The arena figures:

* `arena_bytes`, `arena_nonpersistent_bytes` (head), `arena_persistent_bytes` (tail) and `allocations`
  are what `print_allocations()` printed after the first `invoke()`: the head holds the memory-planned
  tensors and kernel scratch buffers, the tail the tensor structs, quantization data, op data and the
  allocator itself, and total = head + tail. The record does NOT count the temporary tensors kernels
  take while they prepare, so a model can fail to load in an arena of exactly `arena_bytes`.
* `arena_min_bytes` is the smallest `arena_size` the runtime loads and runs the model in, found by
  bisection with the runtime itself. It is the figure to budget: pad it by the target's margin.

Both are for this host, a 64-bit machine with the reference kernels: on a 32-bit microcontroller the
struct-sized tail parts are smaller, optimized kernels (CMSIS-NN, ESP-NN) can ask for scratch buffers
the reference kernels do not, and an arena buffer not aligned to 16 bytes loses up to 15 bytes.
"""

from __future__ import annotations

import json
import platform
import re
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import UsageError
from edgekit.runtimes.base import dequantize, quantize
from edgekit.runtimes.child import run_child

STAGE = "tflite-micro"
# Given to the runtime for the main run; the host only touches the pages the model uses.
DEFAULT_ARENA_BYTES = 256 << 20
HOST_TIMING = f"host ({platform.machine()}), TFLite Micro reference kernels; not a target figure"
TFLITE_IDENTIFIER = b"TFL3"


class MicroFailure(StrEnum):
    """Why the runtime did not run a model."""

    MISSING_OP = "missing_op"  # an op the runtime has no kernel registered for
    OP_REJECTED = "op_rejected"  # the kernel exists but refused the model in Prepare (types, shapes, options)
    ARENA_TOO_SMALL = "arena_too_small"
    INVALID_MODEL = "invalid_model"  # the runtime could not read the file as a model
    INVOKE_FAILED = "invoke_failed"
    FAILED = "failed"  # anything else the runtime reported


@dataclass(frozen=True)
class MicroResult:
    """What the TFLite Micro runtime did with one model. See the module docstring for the arena figures."""

    supported: bool  # the runtime loaded the model and ran it once
    missing_ops: tuple[str, ...]  # builtin names ('RFFT2D') or custom codes the runtime has no kernel for
    error: str | None  # one line, the runtime's own messages, when it did not run the model
    arena_bytes: int | None  # total the runtime recorded as used (head + tail)
    arena_persistent_bytes: int | None  # tail
    arena_nonpersistent_bytes: int | None  # head
    allocations: dict[str, int]  # recorded allocation type -> bytes used, alignment included, as printed
    output: list | None  # output 0 for `sample`, raw values in the model's output type
    host_invoke_ms: float | None  # median over `runs`, warm-up discarded; see HOST_TIMING
    failure: MicroFailure | None = None
    arena_min_bytes: int | None = None  # smallest arena_size the runtime loads and runs the model in
    arena_size: int = DEFAULT_ARENA_BYTES  # the arena given to the runtime for the recorded figures
    allocation_log: tuple[str, ...] = ()  # the lines print_allocations() wrote, verbatim
    host_invoke_p90_ms: float | None = None
    host_invoke_runs: int = 0
    host_invoke_warmup: int = 0
    host_invoke_where: str = field(default=HOST_TIMING)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failure"] = str(self.failure) if self.failure else None
        return data


def measure(model: bytes | str | Path, sample: np.ndarray | None = None, runs: int = 0, warmup: int = 2,
            arena_size: int = DEFAULT_ARENA_BYTES, find_min_arena: bool = True,
            timeout_s: float = 120.0) -> MicroResult:
    """Load `model` in TFLite Micro, run it once, and read back the arena record.

    `sample` sets the single input (with or without the batch axis); a float sample for an integer
    input is quantized with the scale and zero point stored in the file. Without it every input is
    zeros. `runs` > 0 times that many `invoke()` calls after `warmup` discarded ones. `arena_size` is
    the arena given to the runtime; a model that needs more is reported as `arena_too_small`.
    Raises UsageError for a file that is not a TFLite model or a sample that does not fit its input,
    StageError when the runtime crashes, hangs past `timeout_s` or its process exits unexpectedly."""
    name, data = _read(model)
    for label, value, least in (("runs", runs, 0), ("warmup", warmup, 0), ("arena_size", arena_size, 1)):
        if not isinstance(value, int) or value < least:
            raise UsageError(f"{label} must be an integer of at least {least}, got {value!r}")
    if not timeout_s > 0:
        raise UsageError(f"timeout_s must be positive, got {timeout_s!r}")
    options = {"arena_size": arena_size, "runs": runs, "warmup": warmup, "find_min_arena": find_min_arena}
    values, _ = _in_child(name, data, options, timeout_s, sample=sample)
    return _result(values, arena_size, warmup)


def _read(model: bytes | str | Path) -> tuple[str, bytes]:
    if isinstance(model, bytes | bytearray):
        name, data = "<bytes>", bytes(model)
    else:
        name = str(model)
        try:
            data = Path(model).read_bytes()
        except OSError as exc:
            raise UsageError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    if not data:
        raise UsageError(f"{name}: not a TFLite model (empty file)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise UsageError(f"{name}: not a TFLite model (no '{TFLITE_IDENTIFIER.decode()}' at bytes 4:8)")
    return name, data


def _in_child(name: str, data: bytes, options: dict[str, Any], timeout_s: float, **arrays: np.ndarray | None
              ) -> tuple[dict[str, Any], np.ndarray | None]:
    """Run the child on `data` with `options` and the given arrays (`sample`, `samples`; saved for it as .npy
    files, their paths in the options): (what it reported, merged; the outputs it saved for `samples`)."""
    with tempfile.TemporaryDirectory(prefix="edgekit-micro-") as folder:
        path, outputs = Path(folder) / "model.tflite", Path(folder) / "outputs.npy"
        path.write_bytes(data)
        options = {**options, "outputs": str(outputs)}
        for key, array in arrays.items():
            if array is not None:
                options[key] = str(Path(folder) / f"{key}.npy")
                np.save(options[key], np.asarray(array), allow_pickle=False)
        done = run_child("edgekit.runtimes.tflm_child", [str(path), json.dumps(options)], model=name,
                         runtime="TFLite Micro", stage=STAGE, timeout_s=timeout_s,
                         crash_hint="the file may be truncated or corrupt")
        return done.values, np.load(outputs, allow_pickle=False) if outputs.is_file() else None


def _result(merged: dict[str, Any], arena_size: int, warmup: int) -> MicroResult:
    if "failure" in merged:
        missing, error = tuple(merged.get("missing_ops", ())), merged["error"]
        if missing:  # the runtime names only the first op it lacks, and a custom one only as 'CUSTOM'
            error = f"no kernel registered for {', '.join(missing)} (the runtime: {error})"
        return MicroResult(
            supported=False, missing_ops=missing, error=error,
            arena_bytes=None, arena_persistent_bytes=None, arena_nonpersistent_bytes=None, allocations={},
            output=None, host_invoke_ms=None, failure=MicroFailure(merged["failure"]),
            arena_size=arena_size)
    log = tuple(merged["allocation_log"])
    arena = parse_allocations(log)
    times = np.asarray(merged.get("times_ns", ()), dtype=np.float64) / 1e6
    return MicroResult(
        supported=True, missing_ops=(),
        error=None if arena["total"] is not None else "print_allocations() printed no arena total",
        arena_bytes=arena["total"], arena_persistent_bytes=arena["tail"], arena_nonpersistent_bytes=arena["head"],
        allocations=arena["allocations"], output=merged["output"],
        host_invoke_ms=float(np.median(times)) if times.size else None,
        arena_min_bytes=merged.get("arena_min_bytes"), allocation_log=log,
        host_invoke_p90_ms=float(np.percentile(times, 90)) if times.size else None,
        host_invoke_runs=int(times.size), host_invoke_warmup=warmup if times.size else 0,
        arena_size=arena_size)


_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_ALLOCATION_LINE = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead")


def parse_allocations(lines: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The figures in a print_allocations() record, such as
    `[RecordingMicroAllocator] Arena allocation total 2080 bytes` and
    `[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 216 bytes with alignment overhead (requested
    216 bytes for 9 allocations)`. A figure the record lacks is None."""
    figures: dict[str, Any] = {"total": None, "head": None, "tail": None, "allocations": {}}
    for line in lines:
        if match := _ARENA_LINE.search(line):
            figures[match[1]] = int(match[2])
        elif match := _ALLOCATION_LINE.search(line):
            figures["allocations"][match[1]] = int(match[2])
    return figures




class MicroRunner:
    """TFLite Micro behind the Runner protocol (`edgekit.runtimes.base`): each `predict` or `run_raw` is one
    child process that loads the model in an arena of `arena_size` bytes and invokes it once a sample, in
    order (a model with state carries it from one sample to the next, as on a device). Inputs and outputs
    are read from the file, without running anything here. It offers no `prepare`: the host time of
    `invoke()` is timed in the child (`measure(..., runs=N)`). A model the runtime cannot run (a missing
    op, an arena too small) is a UsageError with the runtime's reason."""

    format = "tflite"

    def __init__(self, model: bytes | str | Path, arena_size: int = DEFAULT_ARENA_BYTES, timeout_s: float = 120.0):
        from edgekit.model_info import inspect_tflite

        self.name, self._content = _read(model)
        info = inspect_tflite(model)
        if len(info.inputs) != 1:
            raise UsageError(f"{self.name}: the model has {len(info.inputs)} inputs; a runner feeds exactly one")
        self._input, self._output = info.inputs[0], info.outputs[0]
        self.arena_size, self.timeout_s = arena_size, timeout_s

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis)."""
        return self._input.shape[1:]

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input.dtype)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.input_dtype, self._input.scale, self._input.zero_point)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return dequantize(self._run(self.quantize_input(x)), self._output.scale, self._output.zero_point)

    def run_raw(self, sample: np.ndarray) -> np.ndarray:
        """Output 0 for one batch-1 input already in the model's own dtype, as TFLite Micro gives it."""
        return self._run(sample)

    def _run(self, samples: np.ndarray) -> np.ndarray:
        options = {"arena_size": self.arena_size, "runs": 0, "warmup": 0, "find_min_arena": False}
        values, outputs = _in_child(self.name, self._content, options, self.timeout_s, samples=samples)
        if outputs is None:
            raise UsageError(f"{self.name}: TFLite Micro cannot run it ({_result(values, self.arena_size, 0).error})")
        return outputs
