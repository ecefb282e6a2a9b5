"""Zoo builders: the MLPerf Tiny reference models, converted to full-int8 TFLite by the real converter, have
the published MACs and parameters exactly; layer names are unique and deterministic."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from edgekit import zoo
from edgekit.errors import UsageError
from edgekit.model_info import inspect_tflite


@dataclass(frozen=True)
class Reference:
    input_shape: tuple[int, ...]
    num_classes: int | None
    macs: int  # published, MLPerf Tiny v0.5 reference submission (mlcommons/tiny_results_v0.5)
    params: int  # after batch-norm folding, as the .tflite holds them
    keras_params: int  # count_params(): 4 more per batch-normalized channel (gamma, beta, mean, variance)
    ops: dict[str, int]  # TFLite op counts: no batch-norm MUL/ADD left over once folded
    macs_per_op: dict[str, list[int]]  # by kind, worked out by hand from the architecture


def conv_macs(height: int, width: int, channels: int, inputs_per_output: int) -> int:
    """Output elements (height x width x channels) times the inputs each one sums: kernel height x width
    x input channels, or kernel height x width for a depthwise convolution."""
    return height * width * channels * inputs_per_output


# MobileNetV1 0.25 at 96x96x3, by hand: conv1 3x3 stride 2 -> 48x48x8, then per depthwise-separable
# layer (input channels, output channels, output size), the size halving where the depthwise has stride 2.
VWW_LAYERS = [(8, 16, 48), (16, 32, 24), (32, 32, 24), (32, 64, 12), (64, 64, 12), (64, 128, 6),
              *[(128, 128, 6)] * 5, (128, 256, 3), (256, 256, 3)]

REFERENCES = {
    # conv1 10x4 stride 2 'same' on 49x10 -> 25x5x64; four 3x3 depthwise + 64->64 pointwise at 25x5;
    # average pool; dense 64 -> 12.
    "ds-cnn": Reference(
        (49, 10, 1), 12, macs=2_656_768, params=22_604, keras_params=24_908,
        ops={"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1,
             "SOFTMAX": 1},
        macs_per_op={"conv": [conv_macs(25, 5, 64, 10 * 4 * 1)] + [conv_macs(25, 5, 64, 64)] * 4,
                     "depthwise_conv": [conv_macs(25, 5, 64, 3 * 3)] * 4, "dense": [64 * 12]}),
    "mobilenet-v1": Reference(
        (96, 96, 3), 2, macs=7_489_664, params=210_850, keras_params=221_794,
        ops={"CONV_2D": 14, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1,
             "SOFTMAX": 1},
        macs_per_op={"conv": [conv_macs(48, 48, 8, 3 * 3 * 3),
                              *[conv_macs(hw, hw, out, inp) for inp, out, hw in VWW_LAYERS]],
                     "depthwise_conv": [conv_macs(hw, hw, inp, 3 * 3) for inp, _, hw in VWW_LAYERS],
                     "dense": [256 * 2]}),
    # conv1 16 @32x32; block1 two 3x3 16->16 @32x32; block2 3x3 stride 2 16->32, 3x3 32->32 and a 1x1
    # stride-2 shortcut 16->32 @16x16; block3 the same 32->64 @8x8; average pool; dense 64 -> 10.
    "resnet8": Reference(
        (32, 32, 3), 10, macs=12_501_632, params=77_706, keras_params=78_666,
        ops={"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1},
        macs_per_op={"conv": [conv_macs(32, 32, 16, 3 * 3 * 3), *[conv_macs(32, 32, 16, 3 * 3 * 16)] * 2,
                              conv_macs(16, 16, 32, 3 * 3 * 16), conv_macs(16, 16, 32, 3 * 3 * 32),
                              conv_macs(16, 16, 32, 16),
                              conv_macs(8, 8, 64, 3 * 3 * 32), conv_macs(8, 8, 64, 3 * 3 * 64),
                              conv_macs(8, 8, 64, 32)],
                     "dense": [64 * 10]}),
    # 640 -> 128 x4 -> 8 -> 128 x4 -> 640, every layer dense.
    "fc-autoencoder": Reference(
        (640,), None, macs=264_192, params=265_864, keras_params=269_992, ops={"FULLY_CONNECTED": 10},
        macs_per_op={"dense": [640 * 128] + [128 * 128] * 3 + [128 * 8, 8 * 128] + [128 * 128] * 3 + [128 * 640]}),
}


def randomize(model, seed: int = 0) -> None:
    """Weights as a trained model has them: the converter drops an all-zero FULLY_CONNECTED bias (and
    fresh batch-norms fold into zero biases), which would hide parameters the reference files hold."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape, name = tuple(variable.shape), variable.name
            positive = "gamma" in name or "moving_variance" in name
            values.append(rng.uniform(0.5, 1.5, shape) if positive else rng.normal(0.0, 0.1, shape))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])


def to_int8_tflite(model) -> bytes:
    from edgekit._tf import tf

    rng = np.random.default_rng(1)
    shape = (1, *model.input_shape[1:])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def converted():
    """name -> (Keras model, ModelInfo of its int8 .tflite); each model is built and converted once, on
    first use, so selecting one test converts one model."""
    cache = {}

    def get(name: str):
        if name not in cache:
            reference = REFERENCES[name]
            model = zoo.build_model(name, reference.input_shape, reference.num_classes, {})
            randomize(model)
            cache[name] = model, inspect_tflite(to_int8_tflite(model))
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_mlperf_tiny_models_have_the_published_macs_and_params(converted, name):
    reference = REFERENCES[name]
    model, info = converted(name)
    assert model.count_params() == reference.keras_params
    assert (info.macs, info.params) == (reference.macs, reference.params)
    assert info.op_counts() == reference.ops  # batch-norms folded: no MUL or ADD of their own
    assert info.weight_dtypes == ("int8",)
    assert info.inputs[0].shape == (1, *reference.input_shape) and info.inputs[0].dtype == "int8"
    assert info.outputs[0].shape == (1, reference.num_classes or reference.input_shape[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_mlperf_tiny_macs_per_op(converted, name):
    _, info = converted(name)
    measured = {}
    for op in info.ops:
        if op.kind in ("conv", "depthwise_conv", "dense"):
            measured.setdefault(op.kind, []).append(op.macs)
        else:  # pooling, residual adds, reshapes and softmax count no MACs and hold no parameters
            assert (op.macs, op.params) == (0, 0), op
    expected = REFERENCES[name].macs_per_op
    assert {kind: sorted(macs) for kind, macs in measured.items()} == {k: sorted(v) for k, v in expected.items()}
    assert sum(map(sum, expected.values())) == REFERENCES[name].macs


def test_ds_cnn_first_convolution_and_pool(converted):
    model, info = converted("ds-cnn")
    # 49x10 at stride 2 'same' -> 25x5 positions, 64 filters of 10x4x1, each with its (folded) bias.
    first = info.ops[0]
    assert (first.op, first.macs, first.params) == ("CONV_2D", 25 * 5 * 64 * 10 * 4, 10 * 4 * 64 + 64)
    # The reference pools (49 // 2) x (10 // 2) = 24x5 of the 25x5 map, leaving out the last time step.
    assert model.get_layer("pool").pool_size == (24, 5) and model.get_layer("pool").output_shape == (None, 1, 1, 64)


def test_mobilenet_v1_width_and_grayscale_input():
    # Person detection runs the same network on 96x96x1: only conv1 shrinks, 27 -> 9 inputs per output.
    gray = zoo.build_model("mobilenet-v1", (96, 96, 1), 2, {})
    assert gray.count_params() == REFERENCES["mobilenet-v1"].keras_params - 3 * 3 * 2 * 8
    wide = zoo.build_model("mobilenet-v1", (96, 96, 3), 2, {"alpha": 0.5})
    assert [wide.get_layer(name).filters for name in ("conv1", "pw2", "pw14")] == [16, 32, 512]
    assert wide.get_layer("dw13").strides == (2, 2) and wide.get_layer("dw14").strides == (1, 1)


def test_mlp_is_the_keras_mnist_example():
    model = zoo.build_model("mlp", (28, 28, 1), 10, {})
    assert model.count_params() == 101_770  # 784*128 + 128 + 128*10 + 10
    assert [layer.name for layer in model.layers] == ["input", "flatten", "dense1", "classes"]
    deeper = zoo.build_model("mlp", (28, 28), 10, {"units": [64, 32], "dropout": 0.2})
    assert [layer.name for layer in deeper.layers] == ["input", "flatten", "dense1", "dropout1", "dense2",
                                                        "dropout2", "classes"]


def test_fc_autoencoder_ignores_num_classes_and_needs_flat_inputs():
    for classes in (None, 5):
        assert zoo.build_model("fc-autoencoder", (640,), classes, {}).output_shape == (None, 640)
    with pytest.raises(UsageError, match=r"fc-autoencoder'.*one dimension.*got shape \[5, 128\]"):
        zoo.build_model("fc-autoencoder", (5, 128), None, {})


BUILD_ARGS = {
    "small-cnn": ((8, 8, 1), 10), "mlp": ((28, 28, 1), 10), "ds-cnn": ((49, 10, 1), 12),
    "mobilenet-v1": ((96, 96, 3), 2), "resnet8": ((32, 32, 3), 10), "fc-autoencoder": ((640,), None),
}
EXPECTED_NAMES = {
    "ds-cnn": ["conv1", *[f"{kind}{i}" for i in range(2, 6) for kind in ("dw", "pw")], "pool", "classes"],
    "mobilenet-v1": ["conv1", *[f"{kind}{i}" for i in range(2, 15) for kind in ("dw", "pw")], "pool", "classes"],
    "resnet8": ["conv1", "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block2_shortcut",
                "block3_conv1", "block3_conv2", "block3_shortcut", "block3_add", "pool", "classes"],
    "fc-autoencoder": [*[f"encoder{i}" for i in range(1, 5)], "bottleneck",
                       *[f"decoder{i}" for i in range(1, 5)], "reconstruction"],
}
AUTOMATIC_NAME = re.compile(r"^(conv2d|depthwise_conv2d|dense|batch_normalization|activation|dropout|add|"
                            r"flatten|average_pooling2d|input)_\d+$")


def test_every_builder_is_covered():
    assert set(BUILD_ARGS) == set(zoo.BUILDERS)


@pytest.mark.parametrize("name", BUILD_ARGS)
def test_layer_names_are_unique_and_deterministic(name):
    shape, classes = BUILD_ARGS[name]
    first, second = (zoo.build_model(name, shape, classes, {}) for _ in range(2))
    names = [layer.name for layer in first.layers]
    assert [layer.name for layer in second.layers] == names  # Keras numbers unnamed layers per session
    assert not [n for n, count in Counter(names).items() if count > 1]
    assert not [n for n in names if AUTOMATIC_NAME.match(n)]
    assert set(EXPECTED_NAMES.get(name, [])) <= set(names)
