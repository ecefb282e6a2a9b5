"""LiteRT (the TensorFlow Lite runtime, `ai_edge_litert`) in this process, behind the Runner protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.runtimes.base import BATCH, dequantize, quantize


class TFLiteRunner:
    """A .tflite file in LiteRT with XNNPACK on `threads` threads (an InProcessRunner). Load files from
    anywhere through `open_runner`, which runs them in a child process first."""

    format = "tflite"
    smoke: dict[str, Any] | None = None  # what open_runner's child-process smoke run measured

    def __init__(self, model: bytes | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        content = Path(model).read_bytes() if isinstance(model, str | Path) else model
        self._content, self.threads = content, threads
        self._batch: int | None = None
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
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis)."""
        return tuple(int(d) for d in self._input["shape"][1:])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.input_dtype, *self._input["quantization"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), BATCH):
            chunk = x[start:start + BATCH]
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input["index"], self.quantize_input(chunk))
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output["index"])
            outputs.append(dequantize(raw, *self._output["quantization"]))
        return np.concatenate(outputs)

    def run_raw(self, sample: np.ndarray) -> np.ndarray:
        """Output 0 for one batch-1 input already in the model's own dtype: raw tensors, no quantize or
        dequantize on either side (what an on-device script sees)."""
        self._resize(1)
        self._interpreter.set_tensor(self._input["index"], sample)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output["index"]))

    def prepare(self, sample: np.ndarray) -> Callable[[], object]:
        """Set one input (batch 1) and return the bare call that latency measurements time."""
        return self.prepare_batch(sample[np.newaxis])

    def feed(self, values: dict[str, np.ndarray], state: Sequence[tuple[str, str]] = ()) -> Callable[[], object]:
        """Set every input from `values` (by tensor name, batch included, in the model's dtypes; an input whose
        shape differs is resized to it) and return the bare call that latency measurements time. For each
        (input, output) pair of `state` the call copies the output into the input after invoking."""
        interpreter = self._interpreter
        inputs = {d["name"]: d for d in interpreter.get_input_details()}
        resized = [interpreter.resize_tensor_input(inputs[name]["index"], list(value.shape))
                   for name, value in values.items() if tuple(inputs[name]["shape"]) != value.shape]
        if resized:
            interpreter.allocate_tensors()
            self._input, self._output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            self._batch = None
        for name, value in values.items():
            interpreter.set_tensor(inputs[name]["index"], value)
        if not state:
            return interpreter.invoke
        outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
        copies = [(inputs[i]["index"], outputs[o]) for i, o in state]
        invoke, get, put = interpreter.invoke, interpreter.get_tensor, interpreter.set_tensor

        def call() -> None:
            invoke()
            for into, out in copies:
                put(into, get(out))

        return call

    def outputs(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by tensor name, for one call on `values` (as `feed` takes them)."""
        self.feed(values)()
        return {d["name"]: np.array(self._interpreter.get_tensor(d["index"]))
                for d in self._interpreter.get_output_details()}

    def prepare_batch(self, batch: np.ndarray) -> Callable[[], object]:
        """Set a batch of inputs (resizing the interpreter to it) and return the bare call that times it."""
        self._resize(len(batch))
        self._interpreter.set_tensor(self._input["index"], self.quantize_input(batch))
        return self._interpreter.invoke
