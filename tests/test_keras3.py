"""Models saved by Keras 3 (in a child process, as someone else's script would) imported into tf_keras: the
rebuilt model matches the outputs Keras 3 computed at save time, is flat, and can be wrapped by QAT."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgekit import keras3
from edgekit._tf import keras, tfmot
from edgekit.errors import StageError, UsageError

# Builds the models with Keras 3, saves them, and stores seeded inputs with Keras 3's outputs beside each.
KERAS3_SCRIPT = textwrap.dedent("""
    import sys

    import keras
    import numpy as np
    from keras import layers as L

    folder = sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def save(model, name, formats=("keras",)):
        for layer in _all_layers(model):  # moving statistics away from 0 and 1, so that copying them shows
            if isinstance(layer, L.BatchNormalization):
                layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
        inputs = rng.standard_normal((4, *model.inputs[0].shape[1:])).astype("float32")
        outputs = model(inputs, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        np.savez(f"{folder}/{name}.npz", inputs=inputs, **{f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)})
        for extension in formats:
            model.save(f"{folder}/{name}.{extension}")

    def _all_layers(model):
        for layer in model.layers:
            yield from _all_layers(layer) if isinstance(layer, keras.Model) else [layer]

    save(keras.Sequential([
        keras.Input((12, 12, 1)), L.Conv2D(8, 3, activation="relu"), L.DepthwiseConv2D(3, padding="same"),
        L.SeparableConv2D(8, 3), L.BatchNormalization(), L.ReLU(6.0), L.MaxPooling2D(2), L.Dropout(0.25),
        L.Flatten(), L.Dense(4, activation="softmax"),
    ], name="sequential_cnn"), "sequential", formats=("keras", "h5"))

    inputs = keras.Input((10, 10, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same", name="branch")(x)
    y = L.BatchNormalization(name="branch_bn")(y)
    x = L.Activation("relu")(L.Add(name="skip")([x, y]))
    x = L.ZeroPadding2D(1)(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(x)])
    save(keras.Model(inputs, L.Dense(3, name="head")(x), name="skip_connection"), "skip")

    base = keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(8, 3, strides=2, name="conv"), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(8, 3, padding="same", name="conv_2"),
    ], name="pretrained_base")
    base.trainable = False
    inputs = keras.Input((16, 16, 3))
    x = base(inputs, training=False)  # the transfer-learning shape: a frozen base in inference mode
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    save(keras.Model(inputs, L.Dense(2, name="conv")(x), name="transfer"), "nested", formats=("keras", "h5"))

    inputs = keras.Input((10, 10, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = L.Conv2D(6, 3, activation="hard_swish")(x)
    x = L.Activation("hard_sigmoid")(x) * 2.0 + 1.0
    x = (3.0 - x) / 4.0 - 0.5
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Multiply()([x, L.Softmax()(x)])
    x = L.Reshape((-1, 4))(x)
    save(keras.Model(inputs, L.GlobalMaxPooling1D()(x), name="activations_and_ops"), "ops")

    inputs = keras.Input((20, 3))
    normalization = L.Normalization()
    normalization.adapt(rng.normal(2.0, 3.0, (64, 20, 3)).astype("float32"))
    x = L.Conv1D(8, 3, padding="causal", activation="relu")(normalization(inputs))
    x = L.MaxPooling1D(2)(x)
    x = L.LSTM(8, return_sequences=True)(x)
    x = L.GRU(6)(x)
    save(keras.Model(inputs, L.Dense(1)(x), name="recurrent"), "recurrent")

    inputs = keras.Input((6,))
    save(keras.Model(inputs, L.Dense(2)(L.Lambda(lambda t: t * 2.0 + 1.0)(inputs))), "lambda")

    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net(name="net")
    net(np.zeros((1, 6), "float32"))
    net.save(f"{folder}/subclassed.keras")

    class Scale(L.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((6,))
    keras.Model(inputs, L.Dense(2)(Scale(name="scale")(inputs))).save(f"{folder}/custom_layer.keras")
    inputs = keras.Input((6,), dtype="int32")
    keras.Model(inputs, L.Embedding(10, 4, name="tokens")(inputs)).save(f"{folder}/embedding.keras")
""")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras3")
    result = subprocess.run([sys.executable, "-c", KERAS3_SCRIPT, str(folder)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _expected(saved, name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    stored = np.load(saved / f"{name}.npz")
    return stored["inputs"], [stored[key] for key in sorted(stored.files) if key.startswith("output_")]


def _outputs(model, inputs: np.ndarray) -> list[np.ndarray]:
    outputs = model(inputs, training=False)
    return [np.asarray(output) for output in (outputs if isinstance(outputs, list) else [outputs])]


@pytest.mark.parametrize("file", ["sequential.keras", "sequential.h5", "skip.keras", "nested.keras", "nested.h5",
                                  "ops.keras", "recurrent.keras"])
def test_imported_model_matches_keras3_outputs(saved, file):
    path = saved / file
    assert keras3.is_keras3_file(path)
    model = keras3.import_keras3(path)
    assert isinstance(model, keras.Model)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "nested models are flattened"
    inputs, expected = _expected(saved, path.stem)
    actual = _outputs(model, inputs)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_nested_base_is_flattened_with_its_names_training_mode_and_frozen_weights(saved):
    model = keras3.import_keras3(saved / "nested.keras")
    names = [layer.name for layer in model.layers]
    # The base's 'conv' clashes with the head's 'conv', so it takes the base's name in front; 'conv_2' does not.
    assert "pretrained_base_conv" in names and "conv_2" in names and "conv" in names
    assert model.get_layer("conv").units == 2
    batch_norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert not batch_norm.trainable and not model.get_layer("conv_2").trainable
    assert model.get_layer("conv").trainable
    assert batch_norm.inbound_nodes[0].call_kwargs.get("training") is False  # the base ran in inference mode


@pytest.mark.parametrize("file", ["nested.keras", "skip.keras"])
def test_imported_model_can_be_wrapped_for_quantization_aware_training(saved, file):
    model = keras3.import_keras3(saved / file)
    quantized = tfmot().quantization.keras.quantize_model(model)
    inputs, expected = _expected(saved, (saved / file).stem)
    assert _outputs(quantized, inputs)[0].shape == expected[0].shape


def test_lambda_layer_needs_unsafe_load(saved):
    with pytest.raises(UsageError) as refused:
        keras3.import_keras3(saved / "lambda.keras")
    message = str(refused.value)
    assert "\n" not in message
    assert "Lambda layer" in message and "--unsafe-load" in message and "unsafe=True" in message

    model = keras3.import_keras3(saved / "lambda.keras", unsafe=True)
    inputs, expected = _expected(saved, "lambda")
    np.testing.assert_allclose(_outputs(model, inputs)[0], expected[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("file", "words"), [
    ("subclassed.keras", ["model 'net' is a subclassed Keras 3 model (class Net)", "Functional API"]),
    ("custom_layer.keras", ["layer 'scale' (Scale)", "is a custom layer", "replace it with built-in layers"]),
    ("embedding.keras", ["layer 'tokens' (Embedding)", "not among the layers the Keras 3 importer rebuilds"]),
])
def test_what_cannot_be_rebuilt_gets_one_line_naming_it(saved, file, words):
    with pytest.raises(UsageError) as refused:
        keras3.import_keras3(saved / file)
    message = str(refused.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_only_keras3_files_are_recognised(saved, tmp_path):
    tf_keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    tf_keras_model.save(tmp_path / "legacy.keras")
    tf_keras_model.save(tmp_path / "legacy.h5")
    (tmp_path / "notes.txt").write_text("not a model")
    for path in (tmp_path / "legacy.keras", tmp_path / "legacy.h5", tmp_path / "notes.txt", tmp_path / "missing.h5"):
        assert not keras3.is_keras3_file(path)
    with pytest.raises(UsageError, match="is not a model saved by Keras 3"):
        keras3.import_keras3(tmp_path / "legacy.keras")
    with pytest.raises(UsageError, match="does not exist"):
        keras3.import_keras3(tmp_path / "missing.keras")


def test_rebuilt_outputs_that_differ_are_an_error(saved):
    import keras as keras_3  # Keras 3, beside tf_keras (edgekit._tf is imported above); not edgekit.keras3

    original = keras_3.saving.load_model(saved / "skip.keras", compile=False)
    rebuilt = keras3.rebuild(original)
    assert keras3.max_output_difference(original, rebuilt) <= keras3.TOLERANCE
    head = rebuilt.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + 1e-3])
    with pytest.raises(StageError, match="differs from the Keras 3 model's by up to 0.001"):
        keras3.max_output_difference(original, rebuilt)


def test_imported_model_saves_and_loads_as_tf_keras(saved, tmp_path):
    model = keras3.import_keras3(saved / "ops.keras")  # activations and ops rebuilt from several layers
    model.save(tmp_path / "imported.keras")
    reloaded = keras.models.load_model(tmp_path / "imported.keras")
    inputs, expected = _expected(saved, "ops")
    np.testing.assert_allclose(_outputs(reloaded, inputs)[0], expected[0], rtol=0, atol=1e-5)


def test_convert_takes_a_keras3_file(saved, tmp_path):
    """`edgekit convert` on a file saved by Keras 3: imported, converted and verified like any other."""
    from click.testing import CliRunner

    from edgekit.cli import main

    out = tmp_path / "skip.tflite"
    result = CliRunner().invoke(main, ["convert", str(saved / "skip.keras"), "--to", "tflite-float32",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0 and result.stdout.startswith("tflite-float32: ")
