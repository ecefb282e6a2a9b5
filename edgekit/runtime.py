"""Running artifacts: LiteRT for .tflite, ONNX Runtime for .onnx, behind one small interface.

`predict` takes float inputs and returns float outputs for any precision: int8 models get their
inputs quantized and their outputs dequantized with the scale and zero point stored in the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._files import captured_stderr_fd

BATCH = 256  # samples per invoke when evaluating; batch 1 is used for latency


class TFLiteRunner:
    format = "tflite"

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
        self._resize(1)
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(sample[np.newaxis]))
        return self._interpreter.invoke


class OnnxRunner:
    format = "onnx"

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


def open_runner(path: Path, threads: int = 1) -> TFLiteRunner | OnnxRunner:
    """The runner for a file, chosen by its content (TFLite files carry 'TFL3' at bytes 4-8)."""
    content = Path(path).read_bytes()
    if content[4:8] == b"TFL3":
        return TFLiteRunner(content, threads)
    return OnnxRunner(content, threads)


_MEMORY_PROBE = r"""
import json, resource, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

def peak():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork and exec.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

try:  # start the high-water mark from here (Linux 4.0+), so the imports above do not set it
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = peak()
interpreter = Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[2]))
interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
print(json.dumps({"before": before, "after": peak()}))
"""


def litert_memory(path: Path, threads: int = 1, timeout_s: float = 120) -> dict:
    """Peak memory of a fresh process that loads, allocates and invokes the model with LiteRT, measured
    as the rise of its peak resident set (model buffer, tensor arena, XNNPACK packed weights and
    workspace) over the same process before loading. A child process, so that nothing this process
    already holds is counted, and a crash in the runtime cannot take edgekit down."""
    import json
    import subprocess
    import sys

    from edgekit.errors import StageError

    try:
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), str(threads)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise StageError("bench", f"{path}: LiteRT did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise StageError("bench", f"{path}: LiteRT failed in a child process: {reason}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rss_rise_bytes": max(0, figures["after"] - figures["before"]), "process_peak_bytes": figures["after"],
            "basis": "measured", "where": "host",
            "method": "rise of the peak resident set of a child process that loads, allocates and invokes the "
                      "model with LiteRT (the model, its tensor arena, XNNPACK's packed weights and the "
                      "runtime code pages first touched)"}
