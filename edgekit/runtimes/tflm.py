"""Run a .tflite file in the real TensorFlow Lite Micro runtime (PyPI `tflite-micro`) and report what it did.

For one model: whether the runtime loads and runs it (and, when it does not, which ops it lacks, named
by the runtime), the tensor arena the runtime recorded as used, the smallest arena it runs in, and on
request the output for one input and the host time of `invoke()`.

The runtime is native code, and a damaged model can crash it, so it always works in a child process
(`python -m edgekit.runtimes.tflm MODEL OPTIONS`, this module, which writes JSON lines on stdout) under a
timeout: a crash, a hang or an unexpected exit becomes one `StageError` line naming the file and what
the runtime was doing. TensorFlow is never imported, in the child or here.

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
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.errors import StageError, UsageError
from edgekit.runtimes.child import phase as child_phase
from edgekit.runtimes.child import records as child_records
from edgekit.runtimes.child import signal_name

STAGE = "tflite-micro"
# Given to the runtime for the main run; the host only touches the pages the model uses.
DEFAULT_ARENA_BYTES = 256 << 20
HOST_TIMING = f"host ({platform.machine()}), TFLite Micro reference kernels; not a target figure"
_TFLITE_IDENTIFIER = b"TFL3"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


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
    with tempfile.TemporaryDirectory(prefix="edgekit-micro-") as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(data)
        if sample is not None:
            np.save(Path(folder) / "sample.npy", np.asarray(sample), allow_pickle=False)
            options["sample"] = str(Path(folder) / "sample.npy")
        records = _run_child(name, path, options, timeout_s)
    return _result(name, records, arena_size, warmup)


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
    if data[4:8] != _TFLITE_IDENTIFIER:
        raise UsageError(f"{name}: not a TFLite model (no '{_TFLITE_IDENTIFIER.decode()}' at bytes 4:8)")
    return name, data


def _run_child(name: str, path: Path, options: dict, timeout_s: float) -> list[dict]:
    command = [sys.executable, "-m", "edgekit.runtimes.tflm", str(path), json.dumps(options)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        records = child_records(exc.stdout)
        raise StageError(STAGE, f"{name}: no result within {timeout_s:g} s while {child_phase(records)} "
                                f"(the runtime hung, or the model is that slow on this host)") from None
    records = child_records(done.stdout)
    if done.returncode < 0:
        how = signal_name(done.returncode)
        raise StageError(STAGE, f"{name}: the runtime crashed ({how}) while {child_phase(records)}; "
                                "the file may be truncated or corrupt")
    if done.returncode != 0 or not records or "end" not in records[-1]:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise StageError(STAGE, f"{name}: the runtime process exited with status {done.returncode} while "
                                f"{child_phase(records)}: {last}")
    return records


def _result(name: str, records: list[dict], arena_size: int, warmup: int) -> MicroResult:
    merged: dict[str, Any] = {}
    for record in records:
        merged.update({k: v for k, v in record.items() if k != "begin"})
    if "usage_error" in merged:
        raise UsageError(f"{name}: {merged['usage_error']}")
    common = {"arena_size": arena_size}
    if "failure" in merged:
        missing, error = tuple(merged.get("missing_ops", ())), merged["error"]
        if missing:  # the runtime names only the first op it lacks, and a custom one only as 'CUSTOM'
            error = f"no kernel registered for {', '.join(missing)} (the runtime: {error})"
        return MicroResult(
            supported=False, missing_ops=missing, error=error,
            arena_bytes=None, arena_persistent_bytes=None, arena_nonpersistent_bytes=None, allocations={},
            output=None, host_invoke_ms=None, failure=MicroFailure(merged["failure"]), **common)
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
        host_invoke_runs=int(times.size), host_invoke_warmup=warmup if times.size else 0, **common)


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


# ---- the child process: everything below runs under `python -m edgekit.runtimes.tflm` -----------------------

_NOT_FOUND = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_OUT_OF_RANGE = re.compile(r"Op builtin_code out of range: (\d+)")
_NO_REGISTRATION = re.compile(r"Failed to get registration from op code")
# Arena exhaustion, in each form the allocators and the memory planner report it.
_NO_ROOM = re.compile(r"missing: \d+|bytes required|Too many buffers|"
                      r"Failed to allocate (resource buffer|variable tensor)")
_PREPARE_FAILED = re.compile(r"failed to prepare with status")
_INVOKE_FAILED = re.compile(r"failed to invoke with status")
_FILLER_OP = "ABS"  # every TFLM build registers it, and its parser ignores the options of the op it replaces


class _BadSample(Exception):
    pass


def _child_main(argv: list[str]) -> None:
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray native printf must not land among the JSON lines

    def emit(**record) -> None:
        results.write(json.dumps(record) + "\n")
        results.flush()

    path, options = argv[0], json.loads(argv[1])
    emit(begin="importing the runtime")
    with captured_stderr_fd():
        from tflite_micro.python.tflite_micro import runtime
    data = Path(path).read_bytes()
    arena_size = options["arena_size"]

    emit(begin="loading the model")
    interpreter, log, error = _load(runtime, data, arena_size)
    if interpreter is None:
        failure = _classify(log, error)
        emit(**failure)
        if failure["failure"] == MicroFailure.MISSING_OP:
            emit(begin="probing each op alone for the ones the runtime lacks")
            missing = _probe_missing_ops(runtime, data, arena_size)
            emit(missing_ops=missing or failure["missing_ops"])
        emit(end=True)
        return

    emit(begin="setting the input")
    try:
        inputs = _feed(interpreter, options.get("sample"))
    except _BadSample as exc:
        emit(usage_error=str(exc), end=True)
        return

    emit(begin="running the model")
    with captured_stderr_fd() as log:
        try:
            _invoke(interpreter, inputs)
            output, error = interpreter.get_output(0), None
        except Exception as exc:
            error = exc
    if error is not None:
        emit(**_classify(log, error), end=True)
        return

    emit(begin="printing the arena record")
    with captured_stderr_fd() as record:
        interpreter.print_allocations()
    emit(output=output.tolist(), allocation_log=record)

    if options["runs"]:
        emit(begin="timing invoke()")
        emit(times_ns=_time_invoke(interpreter, options["runs"], options["warmup"]))
    if options["find_min_arena"]:
        emit(begin="searching the smallest arena")
        total = parse_allocations(record)["total"]
        if total is not None:
            emit(arena_min_bytes=_smallest_arena(runtime, data, inputs, total, arena_size))
    emit(end=True)


def _load(runtime, data: bytes, arena_size: int):
    """(interpreter or None, the runtime's log lines, the exception)."""
    with captured_stderr_fd() as log:
        try:
            return runtime.Interpreter.from_bytes(data, arena_size=arena_size), log, None
        except Exception as exc:
            error = exc
    return None, log, error


def _classify(log: list[str], error: Exception) -> dict[str, Any]:
    lines = list(dict.fromkeys(line.strip() for line in log if line.strip()))
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = "\n".join(lines)
    if not lines and not isinstance(error, RuntimeError):  # raised while Python read the flatbuffer
        kind = MicroFailure.INVALID_MODEL
        reason = f"{type(error).__name__}: {reason}"
    elif _NO_ROOM.search(text):
        kind = MicroFailure.ARENA_TOO_SMALL
    elif _NO_REGISTRATION.search(text) or _NOT_FOUND.search(text) or _OUT_OF_RANGE.search(text):
        kind = MicroFailure.MISSING_OP
    elif _PREPARE_FAILED.search(text):
        kind = MicroFailure.OP_REJECTED
    elif _INVOKE_FAILED.search(text) or "invocation failed" in reason:
        kind = MicroFailure.INVOKE_FAILED
    else:
        kind = MicroFailure.FAILED
    missing = _NOT_FOUND.findall(text) + [f"BUILTIN_{code}" for code in _OUT_OF_RANGE.findall(text)]
    message = "; ".join([*lines, reason])
    return {"failure": kind.value, "error": message if len(message) <= 500 else message[:497] + "...",
            "missing_ops": missing}


def _probe_missing_ops(runtime, data: bytes, arena_size: int) -> list[str]:
    """The runtime stops at the first op it lacks and names a custom op only as 'CUSTOM'. So each op is
    tried alone: a copy of the model with every other operator code turned into a filler op the runtime
    has, and the op is missing when the runtime again fails to find its registration."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    filler = getattr(schema.BuiltinOperator, _FILLER_OP)

    def op_name(code) -> str:
        number = max(code.builtinCode, code.deprecatedBuiltinCode)
        if number == schema.BuiltinOperator.CUSTOM and code.customCode:
            return code.customCode.decode(errors="replace") if isinstance(code.customCode, bytes) else code.customCode
        return names.get(number, f"BUILTIN_{number}")

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    ops = list(dict.fromkeys(op_name(code) for code in model.operatorCodes or ()))
    missing = []
    for op in ops:
        probe = schema.ModelT.InitFromPackedBuf(data, 0)
        kept = {i for i, code in enumerate(probe.operatorCodes) if op_name(code) == op}
        for i, code in enumerate(probe.operatorCodes):
            if i not in kept:
                code.builtinCode = code.deprecatedBuiltinCode = filler
                code.customCode, code.version = None, 1
        for graph in probe.subgraphs or ():
            for operator in graph.operators or ():
                if operator.opcodeIndex not in kept:  # a builtin with custom options is refused before lookup
                    operator.customOptions = None
        builder = flatbuffers.Builder(len(data) + 1024)
        builder.Finish(probe.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
        finished, lacked = _isolated(partial(_lacks_an_op, runtime, bytes(builder.Output()), arena_size))
        if finished and lacked:  # a probe that crashed got past the lookup, into the filler ops' Prepare
            missing.append(op)
    return missing


def _lacks_an_op(runtime, data: bytes, arena_size: int) -> bool:
    interpreter, log, error = _load(runtime, data, arena_size)
    return interpreter is None and _classify(log, error)["failure"] == MicroFailure.MISSING_OP


def _isolated(task: Callable[[], Any]) -> tuple[bool, Any]:
    """Run `task` in a forked copy of this process, so that a crash costs only this try:
    (whether it finished, what it returned). Without fork, it runs here."""
    if not hasattr(os, "fork"):
        return True, task()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: report and leave without running any of the parent's exit handlers
        os.close(read)
        code = 1
        try:
            with os.fdopen(write, "w") as pipe:
                pipe.write(json.dumps(task()))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return True, json.loads(payload)
    return False, None


def _input_details(interpreter) -> list[dict]:
    details = []
    with captured_stderr_fd():  # "Input index N out of range" ends the count
        while True:
            try:
                details.append(interpreter.get_input_details(len(details)))
            except IndexError:
                return details


def _feed(interpreter, sample_path: str | None) -> list[np.ndarray]:
    details = _input_details(interpreter)
    if sample_path is None:
        return [np.zeros(d["shape"], d["dtype"]) for d in details]
    if len(details) != 1:
        raise _BadSample(f"the model has {len(details)} inputs; a sample sets exactly one")
    detail, sample = details[0], np.load(sample_path, allow_pickle=False)
    shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
    if sample.shape == shape[1:]:
        sample = sample[np.newaxis]
    if sample.shape != shape:
        raise _BadSample(f"the sample has shape {sample.shape}; the model input is {shape} (or {shape[1:]})")
    if np.issubdtype(dtype, np.integer) and np.issubdtype(sample.dtype, np.floating):
        scales, zero_points = detail["quantization_parameters"]["scales"], detail["quantization_parameters"][
            "zero_points"]
        if not len(scales):
            raise _BadSample(f"the sample is {sample.dtype}; the model input is {dtype} without a scale to "
                             "quantize it with")
        info = np.iinfo(dtype)
        sample = np.clip(np.round(sample / scales[0] + zero_points[0]), info.min, info.max)
    elif not np.can_cast(sample.dtype, dtype, "same_kind"):
        raise _BadSample(f"the sample is {sample.dtype}; the model input is {dtype}")
    return [sample.astype(dtype)]


def _invoke(interpreter, inputs: list[np.ndarray]) -> None:
    for index, value in enumerate(inputs):
        interpreter.set_input(value, index)
    interpreter.invoke()


def _time_invoke(interpreter, runs: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        interpreter.invoke()
    clock, samples = time.perf_counter_ns, []
    for _ in range(runs):
        started = clock()
        interpreter.invoke()
        samples.append(clock() - started)
    return samples


def _smallest_arena(runtime, data: bytes, inputs: list[np.ndarray], recorded: int, given: int) -> int:
    """Bisect the arena size with fresh interpreters. The recorded total is where the search starts,
    not a bound: kernels' temporary tensors while preparing can need more, alignment a few bytes less."""

    def attempt(size: int) -> bool:
        interpreter, _, _ = _load(runtime, data, size)
        if interpreter is None:
            return False
        with captured_stderr_fd():
            try:
                _invoke(interpreter, inputs)
                return True
            except Exception:
                return False

    def runs_in(size: int) -> bool:
        # Some kernels dereference the null a failed allocation returns (resource variables do), so an
        # arena too small can crash the runtime instead of failing: that also means it does not run.
        finished, ran = _isolated(lambda: attempt(size))
        return finished and ran

    low, high = recorded // 2, min(recorded, given)
    while not runs_in(high):
        if high == given:  # cannot happen after a run in `given`, unless the runtime is not deterministic
            return given
        low, high = high, min(given, high + max(high // 4, 64))
    if runs_in(low):
        low = 0
    while high - low > 1:  # runs_in(high) and not runs_in(low)
        middle = (low + high) // 2
        low, high = (low, middle) if runs_in(middle) else (middle, high)
    return high


if __name__ == "__main__":
    _child_main(sys.argv[1:])
