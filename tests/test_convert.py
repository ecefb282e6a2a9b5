"""`edgekit convert` (issue 5): each format converts a tf_keras model file, runs in its runtime and carries
its verification; the integer formats need data; a failed check exits 1; bad model files are one line."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import convert, data
from edgekit.cli import main
from edgekit.model_info import inspect_model
from edgekit.runtimes.host import open_runner
from edgekit.units import size_text

FORMATS = ["tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8", "tflite-int16x8", "onnx", "onnx-int8"]
CALIBRATED = ["tflite-int8", "tflite-int16x8", "onnx-int8"]
NO_DATA = ("needs --data SPEC: its training samples calibrate the integer ranges; without data, convert to "
           "tflite-float32, tflite-float16, tflite-dynamic, onnx")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def model(digits):
    """A small CNN trained for seconds: about 90% test accuracy, enough for agreement to mean something."""
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(digits.input_shape),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(digits.num_classes, activation="softmax", name="classes"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=4, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("convert")
    paths = {"keras": folder / "cnn.keras", "h5": folder / "legacy.h5", "savedmodel": folder / "exported"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.save(paths["savedmodel"], save_format="tf")
    return paths


@pytest.fixture(scope="module")
def converted(files):
    """fmt -> (CliRunner result, output path) of `edgekit convert cnn.keras --to fmt --data digits`, run once."""
    results = {}

    def run(fmt):
        if fmt not in results:
            result = _convert(files["keras"], "--to", fmt, "--data", "digits", "--calibration-samples", "100")
            results[fmt] = result, convert.default_output(files["keras"], fmt)
        return results[fmt]

    return run


def _convert(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_converts_runs_and_reports_its_check(fmt, converted, model, digits):
    result, path = converted(fmt)
    assert result.exit_code == 0, result.output + repr(result.exception)
    suffix = {"onnx": ".onnx", "onnx-int8": ".int8.onnx"}.get(fmt, f".{fmt.removeprefix('tflite-')}.tflite")
    assert path.name == f"cnn{suffix}"
    size = size_text(path.stat().st_size)
    figure = (r"agrees with Keras on \d+\.\d% of 180 validation inputs \(at least 95%\)"
              if convert.FORMATS[fmt].tolerance is None else
              r"differs from Keras by at most \S+ on 180 validation inputs \(tolerance \S+\)")
    assert re.fullmatch(f"{re.escape(f'{fmt}: {path}, {size}; ')}{figure}\n", result.stdout), result.stdout
    runner = open_runner(path)
    assert runner.format == convert.FORMATS[fmt].format
    expected = model.predict(digits.x_test, verbose=0).argmax(-1)
    assert np.mean(runner.predict(digits.x_test).argmax(-1) == expected) >= 0.95


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_library_returns_the_verification_record(fmt, model, digits):
    conversion = convert.convert(model, fmt, digits.representative(100), digits.x_val, "classification",
                                 inputs_from="validation")
    check = conversion.check
    assert check["format"] == fmt and check["against"] == "keras"
    assert check["inputs"] == len(digits.x_val) and check["inputs_from"] == "validation"
    if convert.FORMATS[fmt].tolerance is None:
        assert check["min_agreement"] == convert.INT8_MIN_AGREEMENT <= check["agreement"] <= 1
    else:
        assert check["max_abs_diff"] <= check["tolerance"] == convert.FORMATS[fmt].tolerance  # probabilities: scale 1
    assert conversion.precision == convert.FORMATS[fmt].precision


def test_int16x8_has_int16_activations_and_int8_weights(converted):
    from ai_edge_litert.interpreter import Interpreter

    _, path = converted("tflite-int16x8")
    info = inspect_model(path)
    assert info.inputs[0].dtype == info.outputs[0].dtype == "int16"
    assert info.weight_dtypes == ("int8",)
    interpreter = Interpreter(model_path=str(path))
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    assert [op["op_name"] for op in ops] == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                                             "FULLY_CONNECTED", "SOFTMAX"]
    assert {dtypes[i] for op in ops for i in op["outputs"]} == {"int16"}


def test_float16_stores_float16_weights_and_keeps_float_io(converted):
    info = inspect_model(converted("tflite-float16")[1])
    assert info.weight_dtypes == ("float16",)
    assert info.inputs[0].dtype == info.outputs[0].dtype == "float32"
    assert info.size_bytes < inspect_model(converted("tflite-float32")[1]).size_bytes


def test_integer_tflite_formats(converted):
    full = inspect_model(converted("tflite-int8")[1])
    assert full.inputs[0].dtype == full.outputs[0].dtype == "int8" and full.weight_dtypes == ("int8",)
    dynamic = inspect_model(converted("tflite-dynamic")[1])
    assert dynamic.inputs[0].dtype == "float32" and "int8" in dynamic.weight_dtypes


def test_onnx_int8_is_qdq_with_int8_weights(converted):
    info = inspect_model(converted("onnx-int8")[1])
    counts = info.op_counts()
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    assert info.weight_dtypes == ("int8",)
    assert info.inputs[0].dtype == "float32"


def test_h5_and_savedmodel_without_data_are_checked_on_random_inputs(files, tmp_path):
    out = tmp_path / "from-h5.float16.tflite"
    result = _convert(files["h5"], "--to", "tflite-float16", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"tflite-float16: {out}, ") and "on 64 random inputs" in result.stdout
    assert inspect_model(out).weight_dtypes == ("float16",)
    saved = _convert(files["savedmodel"], "--to", "onnx")
    assert saved.exit_code == 0, saved.output
    assert (files["savedmodel"].parent / "exported.onnx").is_file()
    assert "on 64 random inputs" in saved.stdout


@pytest.mark.parametrize("fmt", CALIBRATED)
def test_integer_formats_need_data(fmt, files):
    result = _convert(files["keras"], "--to", fmt)
    assert result.exit_code == 2
    assert result.stderr == f"Error: --to {fmt} {NO_DATA}\n"


def test_a_failed_check_exits_1_and_writes_nothing(files, tmp_path, monkeypatch):
    strict = dataclasses.replace(convert.FORMATS["tflite-float16"], tolerance=1e-9)
    monkeypatch.setitem(convert.FORMATS, "tflite-float16", strict)
    out = tmp_path / "strict.float16.tflite"
    result = _convert(files["keras"], "--to", "tflite-float16", "--out", out)
    assert result.exit_code == 1
    assert re.fullmatch(rf"Error: verify failed: {re.escape(str(files['keras']))}: float16 TFLite output differs from "
                        r"Keras by up to \S+ on 64 random inputs; tolerance is 1e-09 \(1e-09 of the output scale 1\)\n",
                        result.stderr), result.stderr
    monkeypatch.setattr(convert, "INT8_MIN_AGREEMENT", 1.01)
    dynamic = _convert(files["keras"], "--to", "tflite-dynamic", "--out", tmp_path / "strict.dynamic.tflite")
    assert dynamic.exit_code == 1
    assert "at least 101% is required; pass --data to check on real samples" in dynamic.stderr
    assert list(tmp_path.iterdir()) == []


def _lambda_model(path):
    from edgekit._tf import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2, name="double")]).save(path)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "garbage.keras").write_bytes(b"not a model") and p / "garbage.keras",
     "{path}: not a Keras model file (a .keras file is a zip archive; this is not one)"),
    (lambda p: (p / "garbage.h5").write_bytes(b"not a model") and p / "garbage.h5",
     "{path}: not a Keras model file (not an HDF5 file)"),
    (lambda p: p / "missing.keras", "model '{path}' does not exist"),
    (lambda p: _lambda_model(p / "lambda.keras"),
     "{path}: layer 'double' is a Lambda layer, whose stored Python code Keras's safe mode does not run; rebuild "
     "the model with built-in layers in place of the Lambda"),
    (lambda p: _lambda_model(p / "lambda.h5"),
     "{path}: layer 'double' is a Lambda layer, whose stored Python code Keras's safe mode does not run; rebuild "
     "the model with built-in layers in place of the Lambda"),
    (lambda p: p, "{path}: a folder without saved_model.pb, so not a SavedModel; a model is a .keras or .h5 file, "
                  "or a SavedModel folder"),
], ids=["corrupt-keras", "corrupt-h5", "missing", "lambda-keras", "lambda-h5", "folder"])
def test_bad_model_files_are_one_line(make, message, tmp_path):
    path = make(tmp_path)
    result = _convert(path, "--to", "onnx")
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {message.format(path=path)}\n"


def test_unknown_format_and_wrong_out_suffix(files):
    unknown = _convert(files["keras"], "--to", "tflite-int9")
    assert unknown.exit_code == 2
    assert unknown.stderr == ("Error: unknown format 'tflite-int9'; did you mean 'tflite-int8'? "
                              "`edgekit convert --help` lists them\n")
    suffix = _convert(files["keras"], "--to", "onnx", "--out", "model.tflite")
    assert suffix.exit_code == 2
    assert suffix.stderr == "Error: --out 'model.tflite' does not end in .onnx, the suffix of onnx files\n"


@pytest.fixture(scope="module")
def qat_model(digits):
    """Quantization-aware: a depthwise convolution and a batch norm (folded by tfmot), as in the MLPerf nets."""
    from edgekit._tf import keras, tfmot

    keras.utils.set_random_seed(0)
    inputs = keras.Input(digits.input_shape)
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(digits.num_classes, activation="softmax", name="classes")(x)
    qat = tfmot().quantization.keras.quantize_model(keras.Model(inputs, outputs))
    qat.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    qat.fit(digits.x_train[:256], digits.y_train[:256], epochs=1, batch_size=32, verbose=0)
    return qat


@pytest.mark.parametrize("which", ["float32", "int8", "qat-int8"])
def test_the_serving_signature_export_gives_the_bytes_of_tf_keras_full_export(which, model, qat_model, digits):
    """convert.py converts from a SavedModel holding only the model's serving signature (issue 9: a third to a
    fifth of the time); the file must be byte for byte the one TFLiteConverter.from_keras_model writes."""
    from edgekit._tf import tf

    source = qat_model if which == "qat-int8" else model
    calibration = digits.representative(50)
    if which == "float32":
        def configure(converter):
            return converter
    else:
        def configure(converter):
            return convert._integer_settings(converter, calibration, "TFLITE_BUILTINS_INT8", "int8")
    full = configure(tf.lite.TFLiteConverter.from_keras_model(source)).convert()
    assert convert.serving_tflite(source, which, configure) == full
    assert convert.FORMATS[f"tflite-{which.removeprefix('qat-')}"].make(source, calibration) == full


_ONNX_BYTES = """
import hashlib, sys
from edgekit._tf import keras
from edgekit.convert import _onnx_proto
from edgekit.zoo import build_model

def convert():
    keras.utils.set_random_seed(0)  # fresh batch norms: equal biases that tf2onnx merges into one constant
    model = build_model("mobilenet-v1", (32, 32, 3), 2, {"alpha": 0.25})
    return hashlib.sha256(_onnx_proto(model).SerializeToString()).hexdigest()

print(convert(), convert())
"""


@pytest.mark.slow
def test_onnx_bytes_are_the_same_in_any_process_and_for_a_second_conversion_in_one(tmp_path):
    """tf2onnx's names depend on the process (a process-wide counter; merged constants named by set order,
    which string hashing varies): two hash seeds and two conversions in one process give one file."""
    import os
    import subprocess
    import sys

    digests = []
    for seed in ("1", "2"):
        run = subprocess.run([sys.executable, "-c", _ONNX_BYTES], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert run.returncode == 0, run.stderr[-2000:]
        digests += run.stdout.split()
    assert len(digests) == 4 and len(set(digests)) == 1, digests
