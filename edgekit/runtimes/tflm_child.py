"""The TFLite Micro child process: everything here runs under `python -m edgekit.runtimes.tflm_child MODEL
OPTIONS`, started and supervised by `edgekit.runtimes.tflm` (see its docstring for the figures). It reports
through `edgekit.runtimes.child.Reporter`, one JSON record a line, each phase announced before it starts.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.errors import UsageError
from edgekit.runtimes.base import quantize
from edgekit.runtimes.child import Reporter
from edgekit.runtimes.tflm import TFLITE_IDENTIFIER, MicroFailure, parse_allocations

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
    report = Reporter()
    path, options = argv[0], json.loads(argv[1])
    report.begin("importing the runtime")
    with captured_stderr_fd():
        from tflite_micro.python.tflite_micro import runtime
    data = Path(path).read_bytes()
    arena_size = options["arena_size"]

    report.begin("loading the model")
    interpreter, log, error = _load(runtime, data, arena_size)
    if interpreter is None:
        failure = _classify(log, error)
        report.emit(**failure)
        if failure["failure"] == MicroFailure.MISSING_OP:
            report.begin("probing each op alone for the ones the runtime lacks")
            missing = _probe_missing_ops(runtime, data, arena_size)
            report.emit(missing_ops=missing or failure["missing_ops"])
        report.emit(end=True)
        return

    if "samples" in options:
        _run_samples(report, interpreter, options)
        return

    report.begin("setting the input")
    try:
        inputs = _feed(interpreter, options.get("sample"))
    except _BadSample as exc:
        report.emit(usage_error=str(exc), end=True)
        return

    report.begin("running the model")
    outputs, stopped = _run(interpreter, [inputs])
    if stopped is not None:
        report.emit(**stopped, end=True)
        return

    report.begin("printing the arena record")
    with captured_stderr_fd() as record:
        interpreter.print_allocations()
    report.emit(output=outputs[0].tolist(), allocation_log=record)

    if options["runs"]:
        report.begin("timing invoke()")
        report.emit(times_ns=_time_invoke(interpreter, options["runs"], options["warmup"]))
    if options["find_min_arena"]:
        report.begin("searching the smallest arena")
        total = parse_allocations(record)["total"]
        if total is not None:
            report.emit(arena_min_bytes=_smallest_arena(runtime, data, inputs, total, arena_size))
    report.emit(end=True)


def _run_samples(report: Reporter, interpreter, options: dict[str, Any]) -> None:
    """MicroRunner's run: each sample in order, batch 1, and output 0 of every invoke saved to `outputs`."""
    report.begin("setting the input")
    detail, samples = _input_details(interpreter)[0], np.load(options["samples"], allow_pickle=False)
    shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
    if samples.shape[1:] != shape[1:] or samples.dtype != dtype:
        report.emit(usage_error=f"the samples are {samples.dtype} of shape {samples.shape}; the model input is "
                                f"{dtype} of shape {shape}", end=True)
        return
    report.begin(f"running the model on {len(samples)} samples")
    outputs, failure = _run(interpreter, [[sample[np.newaxis]] for sample in samples])
    if failure is not None:
        report.emit(**failure, end=True)
        return
    np.save(options["outputs"], np.concatenate(outputs), allow_pickle=False)
    report.emit(end=True)


def _run(interpreter, feeds: list[list[np.ndarray]]) -> tuple[list[np.ndarray], dict[str, Any] | None]:
    """Invoke once for each list of inputs: (output 0 of each invoke, what the runtime said if one failed)."""
    outputs = []
    with captured_stderr_fd() as log:
        try:
            for inputs in feeds:
                _invoke(interpreter, inputs)
                outputs.append(np.array(interpreter.get_output(0)))
            error = None
        except Exception as exc:
            error = exc
    return outputs, None if error is None else _classify(log, error)


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
        builder.Finish(probe.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
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
    details: list[dict] = []
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
        parameters = detail["quantization_parameters"]
        try:
            sample = quantize(sample, dtype, parameters["scales"], parameters["zero_points"])
        except UsageError as exc:
            raise _BadSample(f"the sample is {sample.dtype}; {exc}") from None
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
