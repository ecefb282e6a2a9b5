"""ONNX Runtime (CPU) in this process, behind the Runner protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtimes.base import BATCH, quantize

# ONNX Runtime's tensor type names -> numpy
ORT_TYPES: dict[str, type] = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def input_shape(shape: list[Any], batch: int) -> list[int]:
    """An ONNX Runtime input's shape at `batch`: a symbolic or unknown dimension past the batch axis as 1."""
    return [batch if axis == 0 else d if isinstance(d, int) and d > 0 else 1 for axis, d in enumerate(shape)]


def session(model: bytes | str, threads: int) -> Any:
    """An ONNX Runtime CPU session for a model's bytes or path, on `threads` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """An .onnx file in ONNX Runtime's CPU provider on `threads` intra-op threads (an InProcessRunner).
    Load files from anywhere through `open_runner`, which runs them in a child process first.

    The graphs edgekit converts take float inputs and quantize inside (QuantizeLinear nodes), so the raw
    input is the float input in the graph's input type, and `quantize_input` is that cast."""

    format = "onnx"
    smoke: dict[str, Any] | None = None

    def __init__(self, model: bytes | Path, threads: int = 1):
        content = Path(model).read_bytes() if isinstance(model, str | Path) else model
        self.threads = threads
        self._session = session(content, threads)
        self._input = self._session.get_inputs()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis); a symbolic dimension as 1."""
        return tuple(input_shape(self._input.shape, 1)[1:])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(ORT_TYPES.get(self._input.type, np.float32))

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.input_dtype)

    def predict(self, x: np.ndarray) -> np.ndarray:
        name, run = self._input.name, self._session.run
        return np.concatenate([run(None, {name: self.quantize_input(x[s:s + BATCH])})[0]
                               for s in range(0, len(x), BATCH)])

    def run_raw(self, sample: np.ndarray) -> np.ndarray:
        """Output 0 for one batch-1 input in the graph's input type, as ONNX Runtime gives it."""
        return np.asarray(self._session.run(None, {self._input.name: sample})[0])

    def prepare(self, sample: np.ndarray) -> Callable[[], object]:
        """Set one input (batch 1) and return the bare call that latency measurements time."""
        feed = {self._input.name: self.quantize_input(sample[np.newaxis])}
        session = self._session
        return lambda: session.run(None, feed)

    def feed(self, values: dict[str, np.ndarray], state: Sequence[tuple[str, str]] = ()) -> Callable[[], object]:
        """The bare call on every input of `values` (by name, batch included, in the graph's types) that latency
        measurements time. For each (input, output) pair of `state` the call feeds the output back as the input
        of the next call."""
        feed, session = dict(values), self._session
        if not state:
            return lambda: session.run(None, feed)
        names = [o.name for o in session.get_outputs()]
        back = [(i, names.index(o)) for i, o in state]

        def call() -> None:
            results = session.run(None, feed)
            for into, out in back:
                feed[into] = results[out]

        return call

    def outputs(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name, for one call on `values`."""
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, (np.asarray(v) for v in self._session.run(None, dict(values))), strict=True))
