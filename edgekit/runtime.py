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
