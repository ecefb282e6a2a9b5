"""What every runner offers (`Runner`), what a runner whose model runs in this process adds (`InProcessRunner`),
and the quantization arithmetic they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

BATCH = 256  # samples per invoke when evaluating; batch 1 is used for latency


@runtime_checkable
class Runner(Protocol):
    """One model file in one runtime, seen the same way whatever the runtime and wherever it runs.

    Inputs come in two kinds. `predict` takes float inputs, as the model's source (Keras) did, and returns
    float outputs for any precision: an integer model gets its inputs quantized and its outputs dequantized
    with the scale and zero point stored in the file. `run_raw` takes one batch-1 input already in the
    model's own dtype and returns output 0 as the runtime gives it, with nothing done on either side: what
    an on-device program sees, and what the exported test data holds. `quantize_input` turns the first kind
    into the second.

    Implemented by the host runtimes (`TFLiteRunner` for LiteRT, `OnnxRunner` for ONNX Runtime), by
    `MicroRunner` (TFLite Micro, each call in a supervised child process), and to be implemented by the
    emulated Cortex-M and Cortex-A runners. A runner that does not run in this process runs in a child
    process supervised by `edgekit.runtimes.child.run_child`, so a crash or a hang costs the child, and
    becomes one error line naming the model, the runtime and the phase it stopped in. Such a runner does
    not offer `prepare`: timing a call from here would time the process start and the pipe, so its
    latency comes from where the model runs (the child's own clock, an emulator's cycle count), reported
    with how it was measured.

    Errors: a model or input the runtime refuses is a `UsageError`; a crash, a hang or an unexpected exit
    of the runtime is a `StageError`. Never a bare exception from the runtime's own code."""

    format: str  # the file format the runtime reads: 'tflite' or 'onnx'

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (no batch axis)."""
        ...

    @property
    def input_dtype(self) -> np.dtype:
        """The dtype of the model's input tensor: what `run_raw` takes."""
        ...

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float inputs (any leading axes) in the model's own input dtype, as `predict` feeds them."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for a batch of float inputs (any length; the runner chunks it)."""
        ...

    def run_raw(self, sample: np.ndarray) -> np.ndarray:
        """Output 0 for one batch-1 input already in the model's dtype: raw tensors, no quantize or dequantize."""
        ...


@runtime_checkable
class InProcessRunner(Runner, Protocol):
    """A runner whose runtime runs in this process (LiteRT, ONNX Runtime), so that the wall-clock time of
    one call is the host's latency figure. Opened from a file that may come from anywhere with
    `edgekit.runtimes.host.open_runner`, which first runs it once in a child process: `smoke` is what that
    child measured (None when it was skipped for a build's own verified file)."""

    threads: int
    smoke: dict[str, Any] | None

    def prepare(self, sample: np.ndarray) -> Callable[[], object]:
        """Set one float input (batch 1) and return the bare call that latency measurements time."""
        ...

    def feed(self, values: dict[str, np.ndarray], state: Sequence[tuple[str, str]] = ()) -> Callable[[], object]:
        """Set every input from `values` (by the runtime's tensor name, batch included, in the model's dtypes) and
        return the bare call that latency measurements time; each (input, output) pair of `state` is fed back
        after every call (edgekit.feeds.FeedPlan gives both)."""
        ...

    def outputs(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name, in the runtime's order, for one call on `values`."""
        ...


def quantize(x: np.ndarray, dtype: np.dtype, scale: Sequence[float] | float = (),
             zero_point: Sequence[int] | int = ()) -> np.ndarray:
    """Float values as a tensor of `dtype` stores them: rounded and clipped with the first (per-tensor) scale
    and zero point for an integer dtype, a plain cast for a float one."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x).astype(dtype)
    scale, zero_point = _first(scale), _first(zero_point)
    if not scale:
        from edgekit.errors import UsageError

        raise UsageError(f"the model input is {dtype} without a scale to quantize float values with")
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x) / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: Sequence[float] | float = (), zero_point: Sequence[int] | int = ()) -> np.ndarray:
    """The float values an integer tensor stands for; a float tensor as it is."""
    if not np.issubdtype(y.dtype, np.integer) or not _first(scale):
        return y
    return (y.astype(np.float32) - _first(zero_point)) * _first(scale)


def _first(values: Sequence[float] | Sequence[int] | float | int) -> Any:
    if isinstance(values, int | float | np.number):
        return values
    return values[0] if len(values) else 0
