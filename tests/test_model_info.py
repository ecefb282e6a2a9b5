"""`edgekit.model_info` on real converter output: tiny Keras models converted to TFLite (float, int8) and ONNX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgekit import model_info as inspect_module
from edgekit.errors import UsageError
from edgekit.model_info import inspect_model, inspect_onnx, inspect_tflite

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 3)
# build_model(), by hand: 8x8x3 -> Conv2D(4, 3x3, same) -> DepthwiseConv2D(3x3, same) -> MaxPool(2)
# -> Flatten (64) -> Dense(5, softmax). MACs are output elements times the inputs each one sums.
CONV_MACS, CONV_PARAMS = 8 * 8 * 4 * (3 * 3 * 3), 3 * 3 * 3 * 4 + 4
DEPTHWISE_MACS, DEPTHWISE_PARAMS = 8 * 8 * 4 * (3 * 3), 3 * 3 * 4 + 4
DENSE_MACS, DENSE_PARAMS = 5 * 64, 64 * 5 + 5
MACS, PARAMS = CONV_MACS + DEPTHWISE_MACS + DENSE_MACS, CONV_PARAMS + DEPTHWISE_PARAMS + DENSE_PARAMS
TFLITE_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "MAX_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 1,
              "SOFTMAX": 1}


def build_model(half_zero: bool = False):
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(SHAPE, name="input"),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(5, activation="softmax", name="dense"),
    ])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = layer.get_weights()
        # Random biases: converters drop all-zero constants (tf2onnx) and merge identical ones (both).
        bias = rng.normal(size=bias.shape)
        if half_zero:  # the rest far from zero, so int8 rounding adds no zeros of its own
            kernel = rng.uniform(0.5, 1.0, kernel.size) * rng.choice([-1.0, 1.0], kernel.size)
            kernel[rng.permutation(kernel.size)[: kernel.size // 2]] = 0.0
            kernel = kernel.reshape(layer.get_weights()[0].shape)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def to_tflite(model, int8: bool = False) -> bytes:
    from edgekit._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(1)
        shape = (1, *model.input_shape[1:])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def to_onnx(model) -> bytes:
    from edgekit._tf import tf, tf2onnx

    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx().convert.from_keras(model, input_signature=signature, opset=17)
    return proto.SerializeToString()


def with_offset_buffers(data: bytes) -> bytes:
    """Rewrite a TFLite file the way models over 2 GB are stored: every constant's bytes after the
    flatbuffer, found through Buffer.offset (from the start of the file) and Buffer.size."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    payloads = {i: bytes(b.data) for i, b in enumerate(model.buffers) if b.data is not None and len(b.data)}
    for i, payload in payloads.items():  # a placeholder offset, so the packed size is already final
        model.buffers[i].data, model.buffers[i].offset, model.buffers[i].size = None, 1 << 40, len(payload)

    def pack() -> bytes:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    head_size = -(-len(pack()) // 16) * 16
    tail = b""
    for i, payload in payloads.items():
        model.buffers[i].offset = head_size + len(tail)
        tail += payload + bytes(-len(payload) % 16)
    head = pack()
    assert len(head) <= head_size
    return head + bytes(head_size - len(head)) + tail


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict:
    """Every model converted once: {name: path}."""
    folder = tmp_path_factory.mktemp("inspect")
    model, sparse = build_model(), build_model(half_zero=True)
    assert model.count_params() == PARAMS
    contents = {
        "float.tflite": to_tflite(model), "int8.tflite": to_tflite(model, int8=True), "float.onnx": to_onnx(model),
        "sparse.tflite": to_tflite(sparse), "sparse-int8.tflite": to_tflite(sparse, int8=True),
        "sparse.onnx": to_onnx(sparse),
    }
    contents["offset.tflite"] = with_offset_buffers(contents["sparse.tflite"])
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    return paths


@pytest.fixture(scope="session")
def transpose_files(tmp_path_factory) -> dict:
    """4x4x3 -> Conv2DTranspose(2, 3x3, stride 2, same) -> GlobalAveragePooling -> Dense(3)."""
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    for layer in (model.layers[0], model.layers[2]):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.linspace(0.1, 0.9, bias.size, dtype=np.float32)])
    folder = tmp_path_factory.mktemp("transpose")
    (folder / "model.tflite").write_bytes(to_tflite(model))
    (folder / "model.onnx").write_bytes(to_onnx(model))
    return {"tflite": folder / "model.tflite", "onnx": folder / "model.onnx", "params": model.count_params()}


def macs_params(info) -> dict[str, tuple[int, int]]:
    return {op.kind: (op.macs, op.params) for op in info.ops if op.macs or op.params}


def test_float_tflite_ops_macs_and_params(files):
    info = inspect_tflite(files["float.tflite"])
    assert info.format == "tflite" and info.size_bytes == files["float.tflite"].stat().st_size
    assert info.op_counts() == TFLITE_OPS
    assert [op.kind for op in info.ops] == ["conv", "depthwise_conv", "pool", "reshape", "dense", "softmax"]
    assert macs_params(info) == {"conv": (CONV_MACS, CONV_PARAMS), "depthwise_conv": (DEPTHWISE_MACS,
                                 DEPTHWISE_PARAMS), "dense": (DENSE_MACS, DENSE_PARAMS)}
    assert (info.macs, info.params) == (MACS, PARAMS)  # RESHAPE's int32 shape constant is not a parameter
    assert info.weight_dtypes == ("float32",)
    assert info.inputs[0].shape == (1, *SHAPE) and info.inputs[0].dtype == "float32"
    assert info.inputs[0].scale == () and info.inputs[0].zero_point == ()
    assert info.outputs[0].shape == (1, 5)


def test_int8_tflite_reports_int8_weights_and_quantized_io(files):
    info = inspect_tflite(files["int8.tflite"])
    assert info.op_counts() == TFLITE_OPS
    assert (info.macs, info.params) == (MACS, PARAMS)  # int32 biases count
    assert info.weight_dtypes == ("int8",)
    for tensor in (info.inputs[0], info.outputs[0]):
        assert tensor.dtype == "int8" and len(tensor.scale) == 1 and len(tensor.zero_point) == 1
        assert tensor.scale[0] > 0
    assert info.size_bytes < inspect_tflite(files["float.tflite"]).size_bytes


def test_onnx_matches_tflite(files):
    onnx_info, tflite_info = inspect_onnx(files["float.onnx"]), inspect_tflite(files["float.tflite"])
    assert onnx_info.format == "onnx"
    assert (onnx_info.macs, onnx_info.params) == (tflite_info.macs, tflite_info.params) == (MACS, PARAMS)
    assert macs_params(onnx_info) == macs_params(tflite_info)
    assert onnx_info.op_counts()["Conv"] == 2 and onnx_info.op_counts()["MatMul"] == 1
    assert onnx_info.inputs[0].name == "input" and onnx_info.inputs[0].shape == (1, *SHAPE)  # batch None -> 1
    assert onnx_info.outputs[0].shape == (1, 5)
    assert onnx_info.weight_dtypes == ("float32",)


def test_transpose_conv_macs_match_across_formats(transpose_files):
    macs = 4 * 4 * 3 * (3 * 3 * 2) + 2 * 3  # each input element spreads over 3x3x2 outputs; then Dense(2 -> 3)
    for path in (transpose_files["tflite"], transpose_files["onnx"]):
        info = inspect_model(path)
        assert (info.macs, info.params) == (macs, transpose_files["params"])
        assert "pool" in {op.kind for op in info.ops}


@pytest.mark.parametrize("name, expected, tolerance", [
    ("float.tflite", 0.0, 0.0), ("int8.tflite", 0.0, 0.02), ("float.onnx", 0.0, 0.0),
    ("sparse.tflite", 0.5, 1e-9), ("sparse-int8.tflite", 0.5, 1e-9), ("sparse.onnx", 0.5, 1e-9),
])
def test_weight_sparsity(files, name, expected, tolerance):
    # int8 rounds a few of the smallest random weights to zero, hence its tolerance.
    assert inspect_model(files[name]).weight_sparsity == pytest.approx(expected, abs=tolerance)


def test_buffers_stored_after_the_flatbuffer(files):
    from ai_edge_litert.interpreter import Interpreter

    inline, offset = inspect_tflite(files["sparse.tflite"]), inspect_tflite(files["offset.tflite"])
    assert (offset.macs, offset.params, offset.weight_sparsity) == (inline.macs, inline.params, 0.5)
    assert offset.ops == inline.ops and offset.size_bytes > inline.size_bytes
    # The rewritten file is one LiteRT itself runs, with the same result.
    sample = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32)
    results = []
    for path in (files["sparse.tflite"], files["offset.tflite"]):
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
        interpreter.invoke()
        results.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(*results)


def test_dispatch_on_content_not_extension(files, tmp_path):
    (tmp_path / "actually-onnx.tflite").write_bytes(files["float.onnx"].read_bytes())
    (tmp_path / "actually-tflite.onnx").write_bytes(files["float.tflite"].read_bytes())
    assert inspect_model(tmp_path / "actually-onnx.tflite").format == "onnx"
    assert inspect_model(tmp_path / "actually-tflite.onnx").format == "tflite"


def test_bytes_and_path_give_the_same_report(files):
    assert inspect_tflite(files["int8.tflite"].read_bytes()) == inspect_tflite(files["int8.tflite"])
    assert inspect_onnx(files["float.onnx"].read_bytes()) == inspect_onnx(str(files["float.onnx"]))


def test_to_dict_is_json(files):
    data = json.loads(json.dumps(inspect_model(files["int8.tflite"]).to_dict()))
    assert data["format"] == "tflite" and data["macs"] == MACS and data["op_counts"] == TFLITE_OPS
    assert data["inputs"][0]["dtype"] == "int8" and data["ops"][0]["kind"] == "conv"


BAD_FILES = {
    "empty": lambda files: b"",
    "truncated TFLite": lambda files: files["float.tflite"].read_bytes()[:1000],
    "TFLite cut by one byte": lambda files: files["float.tflite"].read_bytes()[:-1],
    "TFLite offset data cut": lambda files: files["offset.tflite"].read_bytes()[:-100],
    "truncated ONNX": lambda files: files["float.onnx"].read_bytes()[:1000],
    "random": lambda files: np.random.default_rng(0).bytes(4096),
    "text": lambda files: b"input,label\n0.1,3\n0.7,1\n",
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_are_usage_errors(files, tmp_path, case):
    path = tmp_path / "model.tflite"
    path.write_bytes(BAD_FILES[case](files))
    with pytest.raises(UsageError) as caught:
        inspect_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    if case == "empty":
        assert message == f"{path}: not a TFLite or ONNX model (empty file)"


def test_wrong_format_and_missing_file(files, tmp_path):
    with pytest.raises(UsageError, match=r"float\.onnx: not a TFLite model \(no 'TFL3' at bytes 4:8\)"):
        inspect_tflite(files["float.onnx"])
    with pytest.raises(UsageError, match=r"float\.tflite: not an ONNX model"):
        inspect_onnx(files["float.tflite"])
    with pytest.raises(UsageError, match=r"missing\.tflite: cannot read the file \(No such file or directory\)"):
        inspect_model(tmp_path / "missing.tflite")


def test_kind_tables_name_real_tflite_ops():
    assert set(inspect_module._TFLITE_KINDS) <= set(vars(schema.BuiltinOperator))


def test_inspecting_does_not_import_tensorflow(files):
    code = ("import sys, edgekit.model_info as i; i.inspect_model(sys.argv[1]); i.inspect_model(sys.argv[2]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    paths = [str(files["int8.tflite"]), str(files["float.onnx"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_element_ops_of_pooling_element_wise_and_softmax_ops():
    """Analytic counts: max-pool = output elements x window; add and softmax = output elements."""
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import keras, tf
    from edgekit.model_info import inspect_onnx, inspect_tflite

    inputs = keras.Input((8, 8, 4))
    pooled = keras.layers.MaxPooling2D(2)(inputs)  # 4x4x4 outputs, 2x2 window
    summed = keras.layers.Add()([pooled, pooled])  # 4x4x4
    flat = keras.layers.Flatten()(summed)
    outputs = keras.layers.Softmax()(flat)  # 64
    model = keras.Model(inputs, outputs)
    with captured_stderr_fd():
        content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    info = inspect_tflite(content)
    by_op = {op.op: op.element_ops for op in info.ops}
    assert by_op["MAX_POOL_2D"] == 64 * 4 and by_op["ADD"] == 64 and by_op["SOFTMAX"] == 64
    assert info.element_ops == 64 * 4 + 64 + 64 and info.macs == 0
    from edgekit._tf import tf2onnx

    proto, _ = tf2onnx().convert.from_keras(model, input_signature=(tf.TensorSpec((None, 8, 8, 4), tf.float32),),
                                            opset=17)
    onnx_ops = {op.op: op.element_ops for op in inspect_onnx(proto.SerializeToString()).ops}
    assert onnx_ops["MaxPool"] == 64 * 4 and onnx_ops["Add"] == 64 and onnx_ops["Softmax"] == 64
