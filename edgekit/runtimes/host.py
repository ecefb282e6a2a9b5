"""Running artifacts: LiteRT for .tflite, ONNX Runtime for .onnx, behind one small interface.

`predict` takes float inputs and returns float outputs for any precision: int8 models get their
inputs quantized and their outputs dequantized with the scale and zero point stored in the file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.runtimes.child import phase as child_phase
from edgekit.runtimes.child import records as child_records
from edgekit.runtimes.child import signal_name

BATCH = 256  # samples per invoke when evaluating; batch 1 is used for latency
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class TFLiteRunner:
    format = "tflite"
    smoke: dict[str, Any] | None = None  # what open_runner's child-process smoke run measured

    def __init__(self, model: bytes | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        content = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
        self._content, self.threads = content, threads
        self._batch = None
        with captured_stderr_fd():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on every load
            self._interpreter = Interpreter(model_content=content, num_threads=threads)
            self._resize(1)

    def _resize(self, batch: int) -> None:
        if batch == self._batch:
            return
        interpreter = self._interpreter
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        self._batch = batch

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.float32:
            return y
        scale, zero_point = self._output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale

    def predict(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), BATCH):
            chunk = x[start:start + BATCH]
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input["index"], self.quantize_input(chunk))
            self._interpreter.invoke()
            outputs.append(self._dequantize_output(self._interpreter.get_tensor(self._output["index"])))
        return np.concatenate(outputs)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis)."""
        return tuple(int(d) for d in self._input["shape"][1:])

    def run_raw(self, sample: np.ndarray) -> np.ndarray:
        """Output 0 for one batch-1 input already in the model's own dtype: raw tensors, no quantize or
        dequantize on either side (what an on-device script sees)."""
        self._resize(1)
        self._interpreter.set_tensor(self._input["index"], sample)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output["index"]))

    def prepare(self, sample: np.ndarray):
        """Set one input (batch 1) and return the bare call that latency measurements time."""
        return self.prepare_batch(sample[np.newaxis])

    def prepare_batch(self, batch: np.ndarray):
        """Set a batch of inputs (resizing the interpreter to it) and return the bare call that times it."""
        self._resize(len(batch))
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(batch))
        return self._interpreter.invoke


class OnnxRunner:
    format = "onnx"
    smoke: dict[str, Any] | None = None

    def __init__(self, model: bytes | Path, threads: int = 1):
        import onnxruntime as ort

        content = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.threads = threads
        self._session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._session.run(None, {self._input: x[s:s + BATCH].astype(np.float32)})[0]
                               for s in range(0, len(x), BATCH)])

    def prepare(self, sample: np.ndarray):
        feed = {self._input: sample[np.newaxis].astype(np.float32)}
        session = self._session
        return lambda: session.run(None, feed)


def open_runner(path: str | Path, threads: int = 1, batch_sizes: tuple[int, ...] = (),
                trusted_sha256: str | None = None) -> TFLiteRunner | OnnxRunner:
    """The runner for a model file from anywhere. The file is checked first (`validate.check_model_file`),
    then loaded, allocated and run once on zeros in a child process (`smoke_run`, also at each of
    `batch_sizes`), and only then opened in this process: a file that would crash the runtime costs the
    child, not edgekit. What the child measured stays on the runner as `smoke`.

    `trusted_sha256` is for the files a build made itself: the sha256 of bytes already run in-process by the
    build that made them (every conversion is verified by running it before it is kept or cached). A file
    with exactly that content skips the child, whose guard it does not need, and `smoke` stays None."""
    import hashlib

    from edgekit.validate import check_model_file

    fmt = check_model_file(path)
    content = Path(path).read_bytes()
    trusted = trusted_sha256 is not None and hashlib.sha256(content).hexdigest() == trusted_sha256
    smoke = None if trusted else smoke_run(path, fmt, threads, batch_sizes)
    runner = TFLiteRunner(content, threads) if fmt == "tflite" else OnnxRunner(content, threads)
    runner.smoke = smoke
    return runner


STAGES = {"tflite": ("litert", "LiteRT"), "onnx": ("onnxruntime", "ONNX Runtime")}


def smoke_run(path: str | Path, fmt: str, threads: int = 1, batch_sizes: tuple[int, ...] = (),
              timeout_s: float = 120.0) -> dict[str, Any]:
    """Load `path` in its runtime (LiteRT for 'tflite', ONNX Runtime for 'onnx'), allocate, and invoke it
    once on zeros at batch 1, in a child process (`python -m edgekit.runtimes.host`) under a timeout. Each of
    `batch_sizes` is then resized to and allocated (LiteRT) or run (ONNX Runtime) too, as `predict` will.

    For LiteRT the child also measures its peak memory (see `litert_memory`), returned as
    {"before", "after"} bytes; for ONNX Runtime, {}. A crash (a signal) or a hang is a StageError naming
    the file, the runtime and what it was doing; a model the runtime refuses is a UsageError with the
    runtime's own reason. The child's cost is a Python start and the runtime import, about 0.15 s."""
    import subprocess

    from edgekit.errors import StageError, UsageError

    stage, runtime = STAGES[fmt]
    name = str(path)
    command = [sys.executable, "-m", "edgekit.runtimes.host", fmt, str(Path(path).resolve()), str(threads),
               ",".join(str(b) for b in batch_sizes if b != 1)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise StageError(stage, f"{name}: no result from {runtime} within {timeout_s:g} s while "
                                f"{child_phase(child_records(exc.stdout))} (the runtime hung, or the model is that "
                                "slow on this host)") from None
    records = child_records(done.stdout)
    merged: dict[str, Any] = {}
    for record in records:
        merged.update(record)
    if done.returncode < 0:
        how = signal_name(done.returncode)
        raise StageError(stage, f"{name}: {runtime} crashed ({how}) in a child process while {child_phase(records)}; "
                                "the file may be corrupt or made for another runtime version")
    if "refused" in merged:  # the runtime raised: it read the model and said no
        raise UsageError(f"{name}: {runtime} cannot run it while {child_phase(records)}: {merged['refused']}")
    if done.returncode != 0 or "end" not in merged:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
        raise StageError(stage, f"{name}: the {runtime} child process failed while {child_phase(records)}: {last}")
    return {k: v for k, v in merged.items() if k in ("before", "after")}


def litert_memory(path: Path, threads: int = 1, timeout_s: float = 120, figures: dict | None = None) -> dict:
    """Peak memory of a fresh process that loads, allocates and invokes the model with LiteRT, measured
    as the rise of its peak resident set (model buffer, tensor arena, XNNPACK packed weights and
    workspace) over the same process before loading. A child process, so that nothing this process
    already holds is counted, and a crash in the runtime cannot take edgekit down. `figures` are those
    a smoke run (`open_runner(...).smoke`) already measured with the same threads."""
    figures = figures or smoke_run(path, "tflite", threads, timeout_s=timeout_s)
    return {"rss_rise_bytes": max(0, figures["after"] - figures["before"]), "process_peak_bytes": figures["after"],
            "basis": "measured", "where": "host",
            "method": "rise of the peak resident set of a child process that loads, allocates and invokes the "
                      "model with LiteRT (the model, its tensor arena, XNNPACK's packed weights and the "
                      "runtime code pages first touched)"}


# ---- the child process: everything below runs under `python -m edgekit.runtimes.host` ---------------------

def _peak_bytes() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork and exec.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_main(fmt: str, path: str, threads: int, batch_sizes: list[int]) -> None:
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray native printf must not land among the JSON lines

    def emit(**record) -> None:
        results.write(json.dumps(record) + "\n")
        results.flush()

    def step(what: str, call):
        emit(begin=what)
        try:
            return call()
        except Exception as exc:  # the runtime read the model and refused it: report, do not crash
            message = (str(exc).strip().splitlines() or [""])[0][:300]
            emit(refused=message or type(exc).__name__)
            results.close()
            sys.exit(1)

    emit(begin="importing the runtime")
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
        session = step("loading the model", lambda: ort.InferenceSession(path, options,
                                                                           providers=["CPUExecutionProvider"]))
        for batch in (1, *batch_sizes):
            feed = {i.name: np.zeros([batch if a == 0 else d if isinstance(d, int) and d > 0 else 1
                                      for a, d in enumerate(i.shape)], _ORT_TYPES.get(i.type, np.float32))
                    for i in session.get_inputs()}
            step(f"running the model on zeros (batch {batch})", lambda feed=feed: session.run(None, feed))
        emit(end=True)
        return
    from ai_edge_litert.interpreter import Interpreter

    try:  # start the high-water mark from here (Linux 4.0+), so the imports above do not set it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _peak_bytes()
    with captured_stderr_fd():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = step("loading the model", lambda: Interpreter(model_path=path, num_threads=threads))
    step("allocating tensors", interpreter.allocate_tensors)

    def zeros() -> None:
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))

    step("setting zero inputs", zeros)
    step("running the model on zeros (batch 1)", interpreter.invoke)
    emit(before=before, after=_peak_bytes())
    inputs = interpreter.get_input_details()
    for batch in batch_sizes:
        def resize(batch=batch) -> None:
            for detail in inputs:
                interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()

        step(f"resizing to batch {batch} and allocating", resize)
    emit(end=True)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
              "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(b) for b in sys.argv[4].split(",") if b])
