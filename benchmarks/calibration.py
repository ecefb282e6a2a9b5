"""The models behind a target's calibration points: rebuilt from the zoo, converted with the real
converter, and read back with `edgekit.model_info`, so the cost model sees the same ops the published
measurement ran. Used by `benchmarks/calibrate.py` (fitting) and the tests (checking the fit)."""

from __future__ import annotations

import functools

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.convert import int8_converter
from edgekit.estimate import CalibrationPoint, estimate_latency
from edgekit.model_info import ModelInfo, inspect_tflite
from edgekit.targets import Target
from edgekit.zoo import build_model


@functools.cache
def model_info(builder: str, input_shape: tuple[int, ...], classes: int | None, args: tuple, precision: str,
               seed: int = 0) -> ModelInfo:
    return inspect_tflite(reference_tflite(builder, input_shape, classes, args, precision, seed))


@functools.cache
def reference_tflite(builder: str, input_shape: tuple[int, ...], classes: int | None, args: tuple,
                     precision: str, seed: int = 0) -> bytes:
    """The reference model converted to .tflite. Weights are random but non-zero, because the converter
    drops all-zero biases (a fresh batch-norm folds into one), which would change the op's traffic."""
    from edgekit._tf import tf

    model = build_model(builder, input_shape, classes, dict(args))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([_plausible(w, name.name, rng) for w, name in zip(layer.get_weights(), layer.weights,
                                                                           strict=True)])
    if precision == "int8":
        converter = int8_converter(model, rng.uniform(0, 1, (4, *input_shape)).astype(np.float32))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with captured_stderr_fd():
        return converter.convert()


def point_info(point: CalibrationPoint) -> ModelInfo:
    return model_info(point.model, point.input_shape, point.classes, tuple(sorted(point.args.items())),
                      point.precision)


def estimated_ms(point: CalibrationPoint, target: Target) -> float:
    """What the target's cost model says for the point's model, at the clock the point was measured at,
    in the runtime the point used (current-runtime estimate x speedup_since)."""
    info = point_info(point)
    estimate = estimate_latency(info, target, point.precision, point.clock_mhz)
    ms = estimate.ms * point.speedup_since
    return ms * point.macs / info.macs if point.proxy else ms


def _plausible(weights: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    if "moving_variance" in name or "gamma" in name:
        return rng.uniform(0.5, 1.5, weights.shape).astype(weights.dtype)
    return (rng.standard_normal(weights.shape) * 0.05).astype(weights.dtype)
