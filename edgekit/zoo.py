"""Model builders, in a name -> builder registry. Layer names are deterministic so that later stages
(pruning by name, reports per layer) can address them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edgekit.errors import UsageError, unknown_name

BUILDERS: dict[str, Callable[..., Any]] = {}


def builder(name: str):
    def register(function):
        BUILDERS[name] = function
        return function

    return register


def build_model(name: str, input_shape: Sequence[int], num_classes: int, args: dict[str, Any]):
    """A tf_keras model from the registry; bad arguments become one-line usage errors."""
    if name not in BUILDERS:
        raise unknown_name("model builder", name, BUILDERS, "edgekit models")
    try:
        return BUILDERS[name](tuple(input_shape), num_classes, **args)
    except TypeError as e:
        raise UsageError(f"model builder '{name}': {e}") from None


@builder("small-cnn")
def small_cnn(input_shape, num_classes, filters=(16, 32), dense_units=64, dropout=0.0):
    """Convolutions with 3x3 kernels (one per entry of `filters`), one 2x2 max-pool, a dense layer,
    softmax classes: the digits/MNIST network of the default recipe."""
    from edgekit._tf import keras

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for i, count in enumerate(filters, start=1):
        x = layers.Conv2D(count, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense1")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="small_cnn")
