"""Model builders, in a name -> builder registry. Layer names are deterministic so that later stages
(pruning by name, reports per layer) can address them."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from edgekit.errors import UsageError, unknown_name

if TYPE_CHECKING:
    from edgekit._toml import Table

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


def parameters(name: str) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """The arguments a recipe may give builder `name` (all but input_shape and num_classes): name -> (default,
    the values a Literal annotation allows, or ()). Read from the signature, so without TensorFlow."""
    found = {}
    for parameter in list(inspect.signature(BUILDERS[name], eval_str=True).parameters.values())[2:]:
        annotation = parameter.annotation
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
        found[parameter.name] = (None if parameter.default is parameter.empty else parameter.default, choices)
    return found


def check_args(table: Table, name: str) -> dict[str, Any]:
    """`table` (a recipe's [model.args]) checked against builder `name`'s signature before TensorFlow is
    imported: each key one of its parameters, each value of its default's type (`filters=(16, 32)` takes a list
    of integers) or one its annotation allows. Returns the arguments as given."""
    known = parameters(name)
    table.only(*known, valid=f"builder '{name}' takes")
    for key, (default, choices) in known.items():
        table.like(key, default, choices)
    table.done()
    return dict(table.data)


@builder("small-cnn")
def small_cnn(input_shape, num_classes, filters=(16, 32), dense_units=64, dropout=0.0,
              output: Literal["softmax", "linear"] = "softmax"):
    """Convolutions with 3x3 kernels (one per entry of `filters`), one 2x2 max-pool, a dense layer,
    softmax classes: the digits/MNIST network of the default recipe. `output="linear"` gives one unbounded
    value per target instead (regression)."""
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
    outputs = _head(layers, x, num_classes, output)
    return keras.Model(inputs, outputs, name="small_cnn")


def _head(layers, x, units: int, output: str):
    """The last layer: class probabilities (softmax), or values (linear) for regression."""
    if output not in ("softmax", "linear"):
        raise UsageError(f"model output '{output}': expected 'softmax' (classes) or 'linear' (values)")
    return layers.Dense(units, activation=None if output == "linear" else output,
                        name="classes" if output == "softmax" else "values")(x)


@builder("mlp")
def mlp(input_shape, num_classes, units=(128,), dropout=0.0, output: Literal["softmax", "linear"] = "softmax"):
    """Flatten, one ReLU dense layer per entry of `units`, softmax classes. The defaults are the classic
    Keras MNIST network (28x28 -> 128 -> 10, 101,770 parameters); the TensorFlow quickstart version
    adds `dropout=0.2`, which changes no parameter count. `output="linear"`: values, for regression."""
    from edgekit._tf import keras

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Flatten(name="flatten")(inputs)
    for i, count in enumerate(units, start=1):
        x = layers.Dense(count, activation="relu", name=f"dense{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    outputs = _head(layers, x, num_classes, output)
    return keras.Model(inputs, outputs, name="mlp")


# The four MLPerf Tiny reference models (mlcommons/tiny, benchmark/training/*), rebuilt layer for layer:
# the same kernels, strides, padding, biases, batch-norms and pooling, so that a converted file has the
# reference's MACs and parameters. The L2 weight decay (1e-4) and initializers are the reference's
# training setup. A batch-norm after a convolution or dense layer folds into its weights and bias on
# conversion, so the parameter counts in the docstrings are post-folding (what the .tflite holds); Keras'
# count_params() adds 4 per batch-normalized channel.
# Sources of the figures: MACs, the MLPerf Tiny v0.5 reference submission (mlcommons/tiny_results_v0.5).
# Parameters: ResNet-8's Keras count, 78,666, is printed in the reference's training log
# (benchmark/training/image_classification/Logs/training_log.txt). For the others only model sizes are
# published (MLPerf Tiny v0.5 as reported by the Linley Newsletter, "MLPerf Gets Tiny", 2021-08-03: DS-CNN
# 53 KB, MobileNet 325 KB, ResNet 96 KB, FC-AutoEncoder 270 KB), so their counts are worked out from the
# reference code; they agree with the constant bytes of the published int8 files (kws_ref_model 24,376,
# vww_96_int8 219,072, ad01_int8 270,880 = int8 weights + 4-byte biases, + 8 bytes of RESHAPE shape in the
# first two), as a third-party inventory of those files reports them.


def _with_batch_norm_relu(x, layer, name: str):
    """`layer` (a convolution or dense layer named `name`), then `name`_bn and `name`_relu."""
    from edgekit._tf import keras

    x = layer(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


@builder("ds-cnn")
def ds_cnn(input_shape, num_classes, filters=64, blocks=4, weight_decay=1e-4, dropout=0.2, final_dropout=0.4):
    """MLPerf Tiny keyword spotting DS-CNN (benchmark/training/keyword_spotting/keras_model.py, 'ds_cnn';
    the DS-CNN-S of Zhang et al., "Hello Edge", 2017): 49x10x1 MFCC -> conv1 10x4 stride 2 -> `blocks`
    depthwise-separable blocks (dw{i} 3x3 + pw{i} 1x1, i = 2..blocks+1) -> average pool -> 12 classes.
    At 49x10x1: 2,656,768 MACs, 22,604 parameters after batch-norm folding (Keras: 24,908).
    """
    from edgekit._tf import keras

    layers = keras.layers
    regularizer = keras.regularizers.l2(weight_decay)
    inputs = keras.Input(shape=input_shape, name="input")
    conv1 = layers.Conv2D(filters, (10, 4), strides=2, padding="same", kernel_regularizer=regularizer,
                          name="conv1")
    x = _with_batch_norm_relu(inputs, conv1, "conv1")
    x = layers.Dropout(dropout, name="dropout1")(x)
    for i in range(2, blocks + 2):
        depthwise = layers.DepthwiseConv2D(3, padding="same", depthwise_regularizer=regularizer, name=f"dw{i}")
        x = _with_batch_norm_relu(x, depthwise, f"dw{i}")
        pointwise = layers.Conv2D(filters, 1, padding="same", kernel_regularizer=regularizer, name=f"pw{i}")
        x = _with_batch_norm_relu(x, pointwise, f"pw{i}")
    x = layers.Dropout(final_dropout, name="dropout2")(x)
    # The reference sizes the pool from the input, not the feature map: (49 // 2, 10 // 2) = 24x5 over the
    # 25x5 map, so with 'valid' padding the last time step is left out. Kept, since it is the reference.
    x = layers.AveragePooling2D((input_shape[0] // 2, input_shape[1] // 2), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")


# MobileNetV1 at width 1: output channels of conv1 and of each depthwise-separable layer 2..14, and the
# stride of that layer's depthwise convolution (Howard et al. 2017, table 1).
_MOBILENET_V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                        (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@builder("mobilenet-v1")
def mobilenet_v1(input_shape, num_classes, alpha=0.25, weight_decay=1e-4):
    """MobileNetV1 as MLPerf Tiny's visual wake words reference builds it
    (benchmark/training/visual_wake_words/vww_model.py, from Silicon Labs' EEMBC person-detection model):
    conv1 3x3 stride 2, then depthwise-separable layers dw{i} 3x3 + pw{i} 1x1 for i = 2..14, each
    convolution with its bias, batch-norm and ReLU (not ReLU6), then an average pool over the whole final
    map (not Keras' global pool + dropout + 1x1 conv head) and a dense softmax. Channels are
    int(width-1 channels * alpha). The benchmark uses alpha 0.25 at 96x96x3 with 2 classes (96x96x1 for
    person detection): 7,489,664 MACs, 210,850 parameters after batch-norm folding at 96x96x3.
    """
    from edgekit._tf import keras

    layers = keras.layers

    def conv(filters, kernel, name, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                             kernel_regularizer=keras.regularizers.l2(weight_decay), name=name)

    inputs = keras.Input(shape=input_shape, name="input")
    x = _with_batch_norm_relu(inputs, conv(int(32 * alpha), 3, "conv1", strides=2), "conv1")
    for i, (filters, strides) in enumerate(_MOBILENET_V1_LAYERS, start=2):
        depthwise = layers.DepthwiseConv2D(3, strides=strides, padding="same", depthwise_initializer="he_normal",
                                           depthwise_regularizer=keras.regularizers.l2(weight_decay),
                                           name=f"dw{i}")
        x = _with_batch_norm_relu(x, depthwise, f"dw{i}")
        x = _with_batch_norm_relu(x, conv(int(filters * alpha), 1, f"pw{i}"), f"pw{i}")
    x = layers.AveragePooling2D(tuple(x.shape[1:3]), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v1")


@builder("resnet8")
def resnet8(input_shape, num_classes, filters=16, stacks=3, weight_decay=1e-4):
    """MLPerf Tiny image classification ResNet-8 (benchmark/training/image_classification/keras_model.py,
    `resnet_v1_eembc`): conv1 3x3, then `stacks` residual blocks of two 3x3 convolutions
    (block{i}_conv1, block{i}_conv2) with `filters` doubling per block; blocks after the first start with
    stride 2 and take their shortcut through a 1x1 stride-2 convolution (block{i}_shortcut, no
    batch-norm), the first adds its input unchanged. Average pool over the final map, dense softmax.
    At 32x32x3 with 10 classes: 12,501,632 MACs, 77,706 parameters after batch-norm folding (Keras:
    78,666, as the reference's training log prints).
    """
    from edgekit._tf import keras

    layers = keras.layers

    def conv(count, kernel, name, strides=1):
        return layers.Conv2D(count, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                             kernel_regularizer=keras.regularizers.l2(weight_decay), name=name)

    inputs = keras.Input(shape=input_shape, name="input")
    x = _with_batch_norm_relu(inputs, conv(filters, 3, "conv1"), "conv1")
    for i in range(1, stacks + 1):
        count, strides = filters * 2 ** (i - 1), 1 if i == 1 else 2
        y = conv(count, 3, f"block{i}_conv1", strides=strides)(x)
        y = layers.BatchNormalization(name=f"block{i}_bn1")(y)
        y = layers.Activation("relu", name=f"block{i}_relu1")(y)
        y = conv(count, 3, f"block{i}_conv2")(y)
        y = layers.BatchNormalization(name=f"block{i}_bn2")(y)
        shortcut = x if i == 1 else conv(count, 1, f"block{i}_shortcut", strides=2)(x)
        x = layers.Add(name=f"block{i}_add")([shortcut, y])
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
    x = layers.AveragePooling2D(min(x.shape[1:3]), name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer="he_normal", name="classes")(x)
    return keras.Model(inputs, outputs, name="resnet8")


@builder("fc-autoencoder")
def fc_autoencoder(input_shape, num_classes=None, units=128, bottleneck=8, layers_per_side=4):
    """MLPerf Tiny anomaly detection autoencoder (benchmark/training/anomaly_detection/keras_model.py, the
    DCASE 2020 task 2 baseline): a flat input (640 = 5 frames x 128 log-mel bands) -> `layers_per_side`
    dense layers of `units` (encoder1..) -> a `bottleneck` dense layer -> `layers_per_side` dense layers
    (decoder1..), each with its bias, batch-norm and ReLU -> a linear dense `reconstruction` as wide as
    the input. The anomaly score is the reconstruction error.

    `num_classes` is accepted so that every builder shares the registry's signature, and ignored: the
    output always has the input's width. At 640 inputs: 264,192 MACs, 265,864 parameters after
    batch-norm folding (Keras: 269,992).
    """
    from edgekit._tf import keras

    if len(input_shape) != 1:
        raise UsageError(f"model builder 'fc-autoencoder': needs flat inputs (one dimension, such as "
                         f"[640]), got shape {list(input_shape)}")
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    names = [f"encoder{i}" for i in range(1, layers_per_side + 1)] + ["bottleneck"]
    names += [f"decoder{i}" for i in range(1, layers_per_side + 1)]
    for name in names:
        x = _with_batch_norm_relu(x, layers.Dense(bottleneck if name == "bottleneck" else units, name=name), name)
    outputs = layers.Dense(input_shape[0], name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="fc_autoencoder")
