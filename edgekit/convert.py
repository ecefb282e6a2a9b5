"""Conversion: a tf_keras model -> .tflite (float32, int8) or .onnx bytes, each verified against its
source on the same inputs before it is returned. A mismatch is an error, never a warning."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.errors import StageError
from edgekit.runtime import OnnxRunner, TFLiteRunner

log = logging.getLogger("edgekit")

FLOAT_ATOL = 1e-4  # largest |difference| allowed between a float artifact and its Keras source
INT8_MIN_AGREEMENT = 0.95  # share of samples where the int8 artifact picks the Keras model's class
ONNX_OPSET = 17


@dataclass(frozen=True)
class Conversion:
    name: str  # variant name, also the file stem: float32, int8, onnx
    format: str  # tflite | onnx
    precision: str  # float32 | int8
    content: bytes = field(repr=False)
    check: dict[str, Any] = field(default_factory=dict)  # the verification record

    @property
    def filename(self) -> str:
        return "model.onnx" if self.format == "onnx" else f"{self.name}.tflite"


def tflite_float32(model, check_inputs: np.ndarray) -> Conversion:
    from edgekit._tf import tf

    content = _run_converter(tf.lite.TFLiteConverter.from_keras_model(model), "float32 TFLite")
    return _verified_float(Conversion("float32", "tflite", "float32", content), model, check_inputs,
                           TFLiteRunner)


def int8_converter(model, representative: np.ndarray):
    """The TFLite converter set up for a full-integer model (int8 input and output), calibrated on
    `representative` samples. Unverified: `tflite_int8` is the stage that also checks the result."""
    from edgekit._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[np.newaxis]] for sample in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def tflite_int8(model, representative: np.ndarray, check_inputs: np.ndarray,
                task: str = "classification") -> Conversion:
    """Full-integer model: int8 weights, activations, input and output, calibrated on
    `representative` (training samples). Verified against the Keras model on `check_inputs`: the same class
    on INT8_MIN_AGREEMENT of them, or (outputs that are values) a mean difference within 1 - that share
    of the outputs' spread."""
    from edgekit.tasks import TASKS

    content = _run_converter(int8_converter(model, representative), "int8 TFLite")
    expected = model.predict(check_inputs, verbose=0)
    actual = _run_artifact(TFLiteRunner, content, check_inputs, "int8 TFLite")
    agreement = TASKS[task].agreement(expected, actual)
    check = {"against": "keras", "inputs": len(check_inputs), "agreement": agreement,
             "min_agreement": INT8_MIN_AGREEMENT, "max_abs_diff": float(np.max(np.abs(expected - actual)))}
    if agreement < INT8_MIN_AGREEMENT:
        raise StageError("verify", f"int8 TFLite agrees with the Keras model on {agreement:.1%} of "
                         f"{len(check_inputs)} inputs ({task}); at least {INT8_MIN_AGREEMENT:.0%} is required")
    return Conversion("int8", "tflite", "int8", content, check)


def onnx_float32(model, check_inputs: np.ndarray) -> Conversion:
    import onnx

    from edgekit._tf import tf, tf2onnx

    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    try:
        with captured_stderr_fd() as native_log:
            proto, _ = tf2onnx().convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
        onnx.checker.check_model(proto)
    except Exception as e:  # tf2onnx raises many kinds; the user needs the first line
        raise StageError("convert", f"ONNX conversion: {_first_line(e, native_log)}") from e
    return _verified_float(Conversion("onnx", "onnx", "float32", proto.SerializeToString()), model,
                           check_inputs, OnnxRunner)


def _run_converter(converter, what: str) -> bytes:
    native_log: list[str] = []
    try:
        with captured_stderr_fd() as native_log:
            return converter.convert()
    except Exception as e:
        raise StageError("convert", f"{what} conversion: {_first_line(e, native_log)}") from e
    finally:
        for line in native_log:
            log.debug("converter: %s", line)


def _run_artifact(runner: Callable, content: bytes, inputs: np.ndarray, what: str) -> np.ndarray:
    try:
        return runner(content).predict(inputs)
    except Exception as e:
        raise StageError("verify", f"{what} does not run: {_first_line(e, [])}") from e


def _verified_float(conversion: Conversion, model, inputs: np.ndarray, runner: Callable) -> Conversion:
    what = f"{conversion.precision} {conversion.format}"
    expected = model.predict(inputs, verbose=0)
    actual = _run_artifact(runner, conversion.content, inputs, what)
    difference = float(np.max(np.abs(expected - actual)))
    if not difference <= FLOAT_ATOL:
        raise StageError("verify", f"{what} output differs from Keras by up to {difference:.3g} on "
                         f"{len(inputs)} inputs; tolerance is {FLOAT_ATOL:g}")
    check = {"against": "keras", "inputs": len(inputs), "max_abs_diff": difference, "tolerance": FLOAT_ATOL}
    return Conversion(conversion.name, conversion.format, conversion.precision, conversion.content, check)


def _first_line(error: Exception, native_log: list[str]) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in native_log if "error" in line.lower()]
    return (errors[-1] if errors else lines[0]).strip()[:300]
