"""Two small int8 models for the Ethos-U tests: one whose every operator Vela maps to the NPU, and one with a
DEPTH_TO_SPACE between NPU operators, which Vela 5.2 leaves on the CPU (TFLite Micro and LiteRT run it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (16, 16, 1)


def _int8(model, path: Path, quantized: bool = True) -> Path:
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import tf
    from edgekit.convert import int8_converter

    rng = np.random.default_rng(1)  # non-zero biases: the converter drops all-zero ones
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    with captured_stderr_fd():
        converter = int8_converter(model, rng.uniform(0, 1, (4, *SHAPE)).astype(np.float32)) if quantized else \
            tf.lite.TFLiteConverter.from_keras_model(model)
        path.write_bytes(converter.convert())
    return path


def all_npu(path: Path, quantized: bool = True) -> Path:
    """Convolution, dense and softmax: every operator maps to an Ethos-U55 and U65 (float32 when not `quantized`)."""
    from edgekit._tf import keras

    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    return _int8(model, path, quantized)


def fallback(path: Path) -> Path:
    """One DEPTH_TO_SPACE between NPU operators: Vela 5.2 has no Ethos-U55 support for it, TFLite Micro has."""
    from edgekit._tf import keras, tf

    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Dense(16)(keras.layers.Flatten()(x))
    x = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2), name="d2s")(keras.layers.Reshape((2, 2, 4))(x))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    return _int8(keras.Model(inputs, outputs), path)
