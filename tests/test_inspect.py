"""`edgekit inspect` on the models the other tests make: fields and values, symbolic shapes, resource variables,
the activation estimate against TFLite Micro's own arena record, bad files, and no TensorFlow at start-up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_model_info import MACS, PARAMS, build_model, to_tflite
from test_tflm import int8_conv, streaming_model

from edgekit import _clidoc, inspection
from edgekit.cli import main
from edgekit.model_info import inspect_model
from edgekit.runtimes.tflm import measure

ROOT = Path(__file__).resolve().parents[1]
ONNX_CONV_MACS = 4 * 8 * 8 * 3 * 3 * 3  # Conv 3->4 channels, 3x3, on 8x8
ONNX_DENSE_MACS = 4 * 5  # Gemm 4 -> 5


def symbolic_batch_onnx() -> bytes:
    """Conv, Relu, GlobalAveragePool, Flatten, Gemm on an input of shape [batch, 3, 8, 8] ('batch' a dim_param)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in
               (("conv_w", (4, 3, 3, 3)), ("conv_b", (4,)), ("dense_w", (4, 5)), ("dense_b", (5,)))]
    nodes = [helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["output"])]
    graph = helper.make_graph(nodes, "symbolic", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inspect")
    conv4 = int8_conv(4)
    contents = {"conv4.tflite": conv4, "conv16.tflite": int8_conv(16), "streaming.tflite": streaming_model(),
                "float.tflite": to_tflite(build_model()), "symbolic.onnx": symbolic_batch_onnx(),
                "truncated.tflite": conv4[: len(conv4) // 2], "notes.tflite": b"not a model, just text\n"}
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in contents}


def inspect_json(path: Path, *options: str) -> dict:
    result = CliRunner().invoke(main, ["inspect", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_int8_conv_fields_and_values(files):
    report, info = inspect_json(files["conv4.tflite"]), inspect_model(files["conv4.tflite"])
    assert report["format"] == "tflite" and report["size_bytes"] == files["conv4.tflite"].stat().st_size
    assert (report["macs"], report["params"]) == (info.macs, info.params) and report["macs"] == 8 * 8 * 4 * 27 + 4 * 4
    assert [op["macs"] for op in report["ops"]] == [op.macs for op in info.ops]
    assert [op["params"] for op in report["ops"]] == [op.params for op in info.ops]
    assert report["op_counts"] == {"CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    (source,) = report["inputs"]
    assert source["shape"] == [1, 8, 8, 3] and source["signature"] == [-1, 8, 8, 3]  # Keras' batch is dynamic
    assert source["dtype"] == "int8" and source["bytes"] == 192 and len(source["scale"]) == 1
    assert report["outputs"][0]["shape"] == [1, 4] and report["outputs"][0]["dtype"] == "int8"
    assert report["weight_dtypes"] == ["int8"] and 0 <= report["weight_sparsity"] < 1
    conv = report["ops"][0]
    assert conv["output_shape"] == [1, 8, 8, 4] and report["tensors"][conv["outputs"][0]]["bytes"] == 256
    assert report["activations"]["peak_op"] == 0 and report["activations"]["peak_bytes"] == 192 + 256
    assert report["constant_bytes"] == sum(t["bytes"] for t in report["tensors"] if t["constant"]) > 0
    assert report["resource_variables"] == [] and len(report["subgraphs"]) == 1 and report["arena"] is None


@pytest.mark.parametrize("name", ["conv4", "conv16"])
def test_activation_estimate_is_tflite_micros_planned_arena(files, name):
    """On a chain of ops the greedy planner packs the live tensors exactly: the estimate from tensor lifetimes
    equals the runtime's nonpersistent (head) arena, which holds the planned tensors and scratch buffers."""
    report = inspect_json(files[f"{name}.tflite"])
    measured = measure(files[f"{name}.tflite"], find_min_arena=False)
    assert report["activations"]["peak_bytes"] == measured.arena_nonpersistent_bytes


def test_float_tflite_against_the_analytic_counts(files):
    report = inspect_json(files["float.tflite"])
    assert (report["macs"], report["params"]) == (MACS, PARAMS)
    assert report["inputs"][0]["signature"][0] == -1 and report["inputs"][0]["scale"] == []
    assert report["weight_dtypes"] == ["float32"]


def test_streaming_model_lists_its_resource_variable_and_subgraphs(files):
    report = inspect_json(files["streaming.tflite"])
    assert report["resource_variables"] == [{"name": "Variable", "kind": "resource", "container": "",
                                             "shape": [1, 4], "dtype": "float32", "bytes": 16}]
    assert [g["ops"] for g in report["subgraphs"]] == [6, 2]  # main, then the initialiser CALL_ONCE runs
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"} <= set(report["op_counts"])
    # The resource handles hold no activation bytes: x, state, state * 0.5 and the sum at most.
    assert report["activations"]["peak_bytes"] == 3 * 16
    human = CliRunner().invoke(main, ["inspect", str(files["streaming.tflite"])]).stdout
    assert "resource variables: Variable (1x4 float32, 16 B)" in human


def test_onnx_symbolic_batch(files):
    report, info = inspect_json(files["symbolic.onnx"]), inspect_model(files["symbolic.onnx"])
    assert report["format"] == "onnx"
    assert report["inputs"][0]["signature"] == ["batch", 3, 8, 8] and report["inputs"][0]["shape"] == [1, 3, 8, 8]
    assert report["outputs"][0]["signature"] == ["batch", 5]
    assert report["macs"] == info.macs == ONNX_CONV_MACS + ONNX_DENSE_MACS
    assert [op["op"] for op in report["ops"]] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    # float32, 8x8: Conv holds the input (3 channels) and its output (4); Relu its input and output (4 + 4)
    assert [op["live_bytes"] for op in report["ops"][:2]] == [4 * 64 * (3 + 4), 4 * 64 * (4 + 4)]
    assert report["activations"]["peak_bytes"] == 2048 and report["activations"]["peak_op"] == 1
    human = CliRunner().invoke(main, ["inspect", str(files["symbolic.onnx"])])
    assert human.exit_code == 0 and "batchx3x8x8" in human.stdout and "peak 2 KiB at op 1" in human.stdout


def test_human_output(files):
    result = CliRunner().invoke(main, ["inspect", str(files["conv4.tflite"])])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("conv4.tflite: TFLite, ") and f"{8 * 8 * 4 * 27 + 16:,} MACs" in first
    assert "-1x8x8x3" in result.stdout and "CONV_2D" in result.stdout
    assert "peak 448 B at op 0, estimated from tensor lifetimes" in result.stdout
    assert "TFLite Micro arena: not measured" in result.stdout


def test_arena_runs_tflite_micro_when_asked(files):
    report = inspect_json(files["conv4.tflite"], "--arena")
    arena = report["arena"]
    assert arena["supported"] and arena["nonpersistent_bytes"] == report["activations"]["peak_bytes"]
    assert arena["total_bytes"] == arena["nonpersistent_bytes"] + arena["persistent_bytes"]
    assert arena["min_bytes"] and "host" in arena["where"]


@pytest.mark.parametrize("name, message", [
    ("truncated.tflite", r"truncated TFLite model"),
    ("notes.tflite", r"a text file, not a TFLite model"),
    ("missing.onnx", r"cannot read the file \(No such file or directory\)"),
])
def test_bad_input_is_one_line_and_exit_2(files, name, message):
    path = files.get(name, files["conv4.tflite"].parent / name)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and re.match(rf"Error: {re.escape(str(path))}: .*{message}",
                                                              result.stderr)


def test_arena_of_an_onnx_model_is_one_line(files):
    result = CliRunner().invoke(main, ["inspect", str(files["symbolic.onnx"]), "--arena"])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {files['symbolic.onnx']}: --arena loads the model in TFLite Micro, which runs "
                             ".tflite files only; this is an ONNX model\n")


def _documented(field: str) -> bool:
    names = {name.strip() for row in inspection.JSON_FIELDS for name in row[0].split(",")}
    return field in names or field.replace("outputs[]", "inputs[]") in names


def test_every_json_field_is_documented(files):
    for name in ("conv4.tflite", "streaming.tflite", "symbolic.onnx"):
        report = inspect_json(files[name])
        fields = [key for key, value in report.items() if not isinstance(value, dict) or key == "op_counts"]
        fields += [f"activations.{key}" for key in report["activations"]]
        fields += [f"{key}[].{sub}" for key in ("inputs", "outputs", "ops") for sub in report[key][0]]
        for field in fields:
            assert _documented(field) or _documented(f"{field}[]"), field
    documented = _clidoc.sections()["edgekit inspect"]
    assert all(f"| `{row[0]}` |" in documented for row in inspection.JSON_FIELDS)


def test_inspecting_a_tflite_file_imports_neither_tensorflow_nor_onnx(files):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom edgekit.cli import main\n"
            f"result = CliRunner().invoke(main, ['inspect', {str(files['conv4.tflite'])!r}])\n"
            "assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'onnx', "
            "'onnxruntime')))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
