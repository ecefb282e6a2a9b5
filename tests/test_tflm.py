"""`edgekit.runtimes.tflm` against the real TFLite Micro runtime, on tiny models converted in the session."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgekit.errors import StageError, UsageError
from edgekit.runtimes import tflm as micro
from edgekit.runtimes.tflm import MicroFailure, measure

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 3)

# The runtime used directly, without edgekit: load, run once on zeros, print the arena record (on fd 2),
# then say on stdout whether the model also runs in each extra arena size given.
RUNTIME_DIRECTLY = """
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime

def run(size):
    interpreter = runtime.Interpreter.from_file(sys.argv[1], arena_size=size)
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    interpreter.invoke()
    return interpreter

run(int(sys.argv[2])).print_allocations()
runs = {}
for size in map(int, sys.argv[3:]):
    try:
        run(size)
        runs[size] = True
    except RuntimeError:
        runs[size] = False
print(json.dumps(runs))
"""


def runtime_directly(path: Path, arena_size: int, *try_sizes: int) -> tuple[dict, dict[int, bool]]:
    """The arena record as the runtime printed it, read with plain regexes, and whether it runs in
    each of `try_sizes`."""
    done = subprocess.run([sys.executable, "-c", RUNTIME_DIRECTLY, str(path), str(arena_size),
                           *map(str, try_sizes)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = done.stderr
    record = {part: int(n) for part, n in re.findall(r"Arena allocation (\w+) (\d+) bytes", text)}
    record["types"] = {name: int(n) for name, n in re.findall(r"'([^']+)' used (\d+) bytes", text)}
    return record, {int(size): ran for size, ran in json.loads(done.stdout).items()}


def int8_conv(channels: int) -> bytes:
    from edgekit._tf import keras, tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(SHAPE, name="input"),
        keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(4, activation="softmax", name="dense"),
    ])
    rng = np.random.default_rng(1)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random((1, *SHAPE), dtype=np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def spectrum_model() -> bytes:
    """|rfft(x)|: the converter emits the builtins RFFT2D and COMPLEX_ABS."""
    from edgekit._tf import tf

    class Spectrum(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 16), tf.float32)])
        def __call__(self, x):
            return tf.abs(tf.signal.rfft(x))

    module = Spectrum()
    return tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module).convert()


def streaming_model() -> bytes:
    """A state kept in a tf.Variable between calls: VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE (and CALL_ONCE
    to initialise it). Each call returns state * 0.5 + x and keeps it as the new state."""
    from edgekit._tf import tf

    class Smoother(tf.Module):
        def __init__(self):
            super().__init__()
            self.state = tf.Variable(tf.zeros((1, 4)))

        @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
        def __call__(self, x):
            new = self.state * 0.5 + x
            self.state.assign(new)
            return new

    module = Smoother()
    return tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module).convert()


def edited(data: bytes, edit) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_custom_op(model) -> None:
    """The second operator code (MEAN) renamed to a custom op no runtime has."""
    code = model.operatorCodes[1]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = b"EdgekitNoSuchOp"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("micro")
    conv4 = int8_conv(4)
    contents = {
        "conv4.tflite": conv4, "conv16.tflite": int8_conv(16), "spectrum.tflite": spectrum_model(),
        "streaming.tflite": streaming_model(), "custom.tflite": edited(conv4, with_custom_op),
        "truncated.tflite": conv4[: len(conv4) // 2],
        # A well-formed flatbuffer with no subgraph: the runtime dereferences the missing one (SIGSEGV).
        "no-subgraph.tflite": edited(conv4, lambda model: setattr(model, "subgraphs", [])),
    }
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in contents}


@pytest.fixture(scope="module")
def conv(files) -> dict[str, micro.MicroResult]:
    return {name: measure(files[f"{name}.tflite"]) for name in ("conv4", "conv16")}


def test_int8_conv_runs_and_reports_the_runtime_arena_record(files, conv):
    result = conv["conv4"]
    assert result.supported and result.failure is None and result.error is None and result.missing_ops == ()
    assert result.arena_size == micro.DEFAULT_ARENA_BYTES
    record, _ = runtime_directly(files["conv4.tflite"], result.arena_size)
    assert result.arena_bytes == record["total"]
    assert result.arena_nonpersistent_bytes == record["head"] and result.arena_persistent_bytes == record["tail"]
    assert result.arena_nonpersistent_bytes + result.arena_persistent_bytes == result.arena_bytes
    assert result.allocations == record["types"]
    assert {"TfLiteEvalTensor data", "NodeAndRegistration struct"} <= set(result.allocations)
    assert len(result.allocation_log) == 3 + len(result.allocations)
    assert all(line.startswith("[RecordingMicroAllocator] ") for line in result.allocation_log)
    # The activations the planner keeps in the head: the 8x8x3 input and the 8x8x4 conv output, int8.
    assert result.arena_nonpersistent_bytes == 8 * 8 * 3 + 8 * 8 * 4


@pytest.mark.parametrize("name", ["conv4", "conv16"])
def test_smallest_arena_is_where_the_runtime_starts_to_fail(files, conv, name):
    result = conv[name]
    smallest = result.arena_min_bytes
    _, runs = runtime_directly(files[f"{name}.tflite"], micro.DEFAULT_ARENA_BYTES, smallest, smallest - 1)
    assert runs == {smallest: True, smallest - 1: False}


def test_recorded_arena_is_not_enough_to_load_a_small_model(files, conv):
    # The record leaves out the temporary tensors kernels take while they prepare: with a small head
    # the arena it reports as used is too small to load the model in. The reason arena_min_bytes exists.
    result = conv["conv4"]
    _, runs = runtime_directly(files["conv4.tflite"], micro.DEFAULT_ARENA_BYTES, result.arena_bytes)
    assert runs == {result.arena_bytes: False} and result.arena_min_bytes > result.arena_bytes


def test_more_channels_need_a_bigger_arena(conv):
    small, big = conv["conv4"], conv["conv16"]
    assert big.arena_bytes > small.arena_bytes and big.arena_min_bytes > small.arena_min_bytes
    assert big.arena_nonpersistent_bytes - small.arena_nonpersistent_bytes == 8 * 8 * (16 - 4)


def test_output_matches_litert(files):
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.runtimes.litert import TFLiteRunner

    content = files["conv4.tflite"].read_bytes()
    floats = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    quantized = TFLiteRunner(content).quantize_input(floats[np.newaxis])
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], quantized)
    interpreter.invoke()
    expected = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).astype(int)
    for sample in (quantized, quantized[0], floats):  # int8 with and without batch axis; float, quantized
        result = measure(content, sample=sample, find_min_arena=False)
        assert result.arena_min_bytes is None
        assert np.abs(np.asarray(result.output) - expected).max() <= 1


def test_host_invoke_time_over_runs(files):
    result = measure(files["conv4.tflite"], runs=5, warmup=1, find_min_arena=False)
    assert result.host_invoke_runs == 5 and result.host_invoke_warmup == 1
    assert 0 < result.host_invoke_ms <= result.host_invoke_p90_ms
    assert result.host_invoke_where.startswith("host") and "not a target figure" in result.host_invoke_where
    assert measure(files["conv4.tflite"], find_min_arena=False).host_invoke_ms is None


def test_missing_builtin_ops_are_named(files):
    result = measure(files["spectrum.tflite"])
    assert not result.supported and result.failure is MicroFailure.MISSING_OP
    # The runtime stops at RFFT2D; trying each op alone finds it lacks COMPLEX_ABS too, but has RESHAPE.
    assert result.missing_ops == ("RFFT2D", "COMPLEX_ABS")
    assert "Didn't find op for builtin opcode 'RFFT2D'" in result.error and "\n" not in result.error
    assert result.arena_bytes is None and result.allocations == {} and result.output is None


def test_missing_custom_op_is_named(files):
    # The runtime itself says only 'Failed to get registration from op code CUSTOM'.
    result = measure(files["custom.tflite"])
    assert result.failure is MicroFailure.MISSING_OP and result.missing_ops == ("EdgekitNoSuchOp",)
    assert "op code CUSTOM" in result.error


def test_resource_variables_run_and_keep_state(files):
    result = measure(files["streaming.tflite"], sample=np.ones((1, 4), np.float32), runs=3)
    assert result.supported and result.output == [[1.0, 1.0, 1.0, 1.0]]  # 0 * 0.5 + 1 on the first call
    assert result.arena_nonpersistent_bytes + result.arena_persistent_bytes == result.arena_bytes
    # Below its smallest arena this model crashes the runtime rather than failing, and is still measured.
    assert result.arena_min_bytes > result.arena_bytes
    _, runs = runtime_directly(files["streaming.tflite"], micro.DEFAULT_ARENA_BYTES, result.arena_min_bytes)
    assert runs == {result.arena_min_bytes: True}


def test_arena_too_small_is_reported(files, conv):
    result = measure(files["conv16.tflite"], arena_size=conv["conv16"].arena_min_bytes - 1)
    assert not result.supported and result.failure is MicroFailure.ARENA_TOO_SMALL and not result.missing_ops
    assert "missing:" in result.error


def test_truncated_model_is_reported_invalid(files):
    result = measure(files["truncated.tflite"])
    assert not result.supported and result.failure is MicroFailure.INVALID_MODEL
    assert "\n" not in result.error


def test_runtime_crash_is_one_clean_line(files):
    path = files["no-subgraph.tflite"]
    with pytest.raises(StageError) as caught:
        measure(path)
    assert str(caught.value) == (f"tflite-micro failed: {path}: TFLite Micro crashed (SIGSEGV) in a child process "
                                 "while loading the model; the file may be truncated or corrupt")


def test_timeout_is_one_clean_line(files):
    with pytest.raises(StageError, match=r"^tflite-micro failed: .*conv4\.tflite: no result from TFLite Micro "
                                         r"within 0\.01 s while"):
        measure(files["conv4.tflite"], timeout_s=0.01)


def test_bad_input_is_a_usage_error(files, tmp_path):
    empty, text = tmp_path / "empty.tflite", tmp_path / "text.tflite"
    empty.write_bytes(b"")
    text.write_bytes(b"input,label\n0.1,3\n")
    with pytest.raises(UsageError, match=r"empty\.tflite: not a TFLite model \(empty file\)$"):
        measure(empty)
    with pytest.raises(UsageError, match=r"text\.tflite: not a TFLite model \(no 'TFL3' at bytes 4:8\)$"):
        measure(text)
    with pytest.raises(UsageError, match=r"missing\.tflite: cannot read the file"):
        measure(tmp_path / "missing.tflite")
    with pytest.raises(UsageError, match=r"the sample has shape \(3,\); the model input is \(1, 8, 8, 3\)"):
        measure(files["conv4.tflite"], sample=np.zeros(3, np.int8))
    with pytest.raises(UsageError, match="runs must be"):
        measure(files["conv4.tflite"], runs=-1)


def test_parse_allocations_reads_the_printed_record():
    lines = [
        "[RecordingMicroAllocator] Arena allocation total 2080 bytes",
        "[RecordingMicroAllocator] Arena allocation head 448 bytes",
        "[RecordingMicroAllocator] Arena allocation tail 1632 bytes",
        "[RecordingMicroAllocator] 'Persistent buffer data' used 388 bytes with alignment overhead "
        "(requested 356 bytes for 10 allocations)",
    ]
    assert micro.parse_allocations(lines) == {"total": 2080, "head": 448, "tail": 1632,
                                              "allocations": {"Persistent buffer data": 388}}
    assert micro.parse_allocations([])["total"] is None


def test_to_dict_is_json(conv):
    data = json.loads(json.dumps(conv["conv4"].to_dict()))
    assert data["supported"] is True and data["arena_bytes"] == conv["conv4"].arena_bytes
    assert data["failure"] is None and data["missing_ops"] == []


def test_measuring_does_not_import_tensorflow(files):
    code = ("import sys, edgekit.runtimes.tflm as m; r = m.measure(sys.argv[1]); assert r.supported; "
            "import tflite_micro.python.tflite_micro.runtime; "
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, str(files["conv4.tflite"])], capture_output=True,
                          text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
