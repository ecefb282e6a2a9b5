"""The Runner protocol and the one child-process runner (`edgekit.runtimes`), on real runtimes: LiteRT, ONNX
Runtime and TFLite Micro run one tiny model built here, and real child processes hang, crash and exit."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time

import numpy as np
import pytest

from edgekit.errors import StageError, UsageError
from edgekit.runtimes.base import BATCH, InProcessRunner, Runner
from edgekit.runtimes.child import run_child
from edgekit.runtimes.host import open_runner
from edgekit.runtimes.litert import TFLiteRunner
from edgekit.runtimes.onnx import OnnxRunner
from edgekit.runtimes.tflm import MicroRunner, measure

FEATURES, CLASSES = 8, 4


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """One Keras model (8 -> 16 relu -> 4 softmax) as float and int8 .tflite files, and as an ONNX graph written
    node by node from the same weights; `x` are test inputs, `expected` Keras's outputs for them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekit._tf import keras, tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,), name="input"),
                              keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(CLASSES, activation="softmax", name="output")])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (BATCH + 44, FEATURES)).astype(np.float32)  # more than one predict chunk
    folder = tmp_path_factory.mktemp("runtimes")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (folder / "float.tflite").write_bytes(converter.convert())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    (folder / "int8.tflite").write_bytes(converter.convert())

    (w1, b1), (w2, b2) = (layer.get_weights() for layer in model.layers)
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["a2"]), helper.make_node("Softmax", ["a2"], ["output"])]
    graph = helper.make_graph(
        nodes, "dense", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(value, name) for name, value in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "float.onnx")
    return {"folder": folder, "x": x, "expected": model.predict(x, verbose=0)}


RUNNERS = {
    "litert-float": lambda folder: open_runner(folder / "float.tflite"),
    "litert-int8": lambda folder: open_runner(folder / "int8.tflite"),
    "onnxruntime": lambda folder: open_runner(folder / "float.onnx"),
    "tflite-micro": lambda folder: MicroRunner(folder / "int8.tflite"),
}


@pytest.mark.parametrize("name", RUNNERS)
def test_every_runner_keeps_the_protocol(models, name):
    runner = RUNNERS[name](models["folder"])
    assert isinstance(runner, Runner)
    assert runner.format == ("onnx" if name == "onnxruntime" else "tflite")
    assert runner.input_shape == (FEATURES,)
    integer = name.endswith(("int8", "micro"))
    assert runner.input_dtype == (np.int8 if integer else np.float32)

    x = models["x"]
    raw = runner.quantize_input(x)
    assert raw.shape == x.shape and raw.dtype == runner.input_dtype
    predicted = runner.predict(x)  # float outputs for float inputs, over more than one chunk
    assert predicted.shape == (len(x), CLASSES) and predicted.dtype == np.float32
    # dequantized: within a few output quanta (1/256; the hidden layer's int8 rounding adds its share) of Keras
    assert np.abs(predicted - models["expected"]).max() <= (4 / 256 if integer else 1e-5)

    output = runner.run_raw(raw[:1])  # raw in, raw out: int8 scores for an int8 model
    assert output.shape == (1, CLASSES) and output.dtype == (np.int8 if integer else np.float32)
    if not integer:
        np.testing.assert_array_equal(output, predicted[:1])


@pytest.mark.parametrize("name", ["litert-float", "litert-int8", "onnxruntime"])
def test_in_process_runners_give_a_call_to_time(models, name):
    runner = RUNNERS[name](models["folder"])
    assert isinstance(runner, InProcessRunner) and runner.threads == 1 and runner.smoke is not None
    call = runner.prepare(models["x"][0])
    for _ in range(3):
        call()


def test_tflite_micro_runs_in_a_child_and_offers_no_call_to_time(models):
    runner = MicroRunner(models["folder"] / "int8.tflite")
    assert not isinstance(runner, InProcessRunner) and not hasattr(runner, "prepare")
    # the same int8 file in LiteRT and in TFLite Micro: the same raw scores, up to one quantum of rounding
    litert = TFLiteRunner(models["folder"] / "int8.tflite")
    raw = litert.quantize_input(models["x"][:20])
    np.testing.assert_array_equal(raw, runner.quantize_input(models["x"][:20]))
    micro_outputs = np.concatenate([runner.run_raw(raw[i:i + 1]) for i in range(3)])
    litert_outputs = np.concatenate([litert.run_raw(raw[i:i + 1]) for i in range(3)])
    assert np.abs(micro_outputs.astype(int) - litert_outputs).max() <= 1
    assert np.abs(runner.predict(models["x"][:20]) - litert.predict(models["x"][:20])).max() <= 1 / 256


def test_tflite_micro_runner_errors_name_the_model(models):
    path = models["folder"] / "int8.tflite"
    smallest = measure(path).arena_min_bytes
    # one byte short of the smallest arena: the runtime's own words for it, after the model's name
    with pytest.raises(UsageError, match=rf"^{re.escape(str(path))}: TFLite Micro cannot run it \(.+\)$"):
        MicroRunner(path, arena_size=smallest - 1).predict(models["x"][:2])
    with pytest.raises(UsageError, match=r"the samples are float32 of shape \(1, 8\); the model input is int8"):
        MicroRunner(path).run_raw(models["x"][:1])  # a float sample where raw int8 is due


def test_onnx_runner_quantize_input_is_the_graphs_input_type(models):
    """The graph quantizes inside (if at all), so the raw input is the float input in the graph's type; export
    calls quantize_input on any runner `open_runner` gives."""
    from edgekit.export.boards import reference_pair

    runner = OnnxRunner(models["folder"] / "float.onnx")
    x = models["x"][:5].astype(np.float64)
    raw = runner.quantize_input(x)
    assert raw.dtype == np.float32 and np.array_equal(raw, x.astype(np.float32))
    sample, output = reference_pair(models["folder"] / "float.onnx", given=models["x"][0])
    assert sample.dtype == np.float32 and sample.shape == (1, FEATURES)
    np.testing.assert_allclose(output, models["expected"][:1], atol=1e-5)


# ---- the child-process runner, with children that behave badly on purpose --------------------------------

CHILD = """
import os, signal, sys, time
from edgekit.runtimes.child import Reporter

report = Reporter()
os.write(1, b"a native printf\\n")  # lands on stderr, not among the records
report.begin("warming up")
report.emit(value=1)
report.begin("doing {what}")
{body}
"""
BODIES = {
    "fine": "report.emit(value=2, end=True)",
    "hang": "if os.fork() == 0:\n    time.sleep(60)\ntime.sleep(60)",  # a grandchild holds stdout open too
    "segv": "os.kill(os.getpid(), signal.SIGSEGV)",
    "abort": "os.abort()",
    "exit": "print('the last words', file=sys.stderr)\nsys.exit(3)",
    "quiet": "pass",  # exits 0 without its end record
    "refuse": "report.emit(usage_error='the runtime says no', end=True)",
}


@pytest.fixture()
def children(tmp_path, monkeypatch) -> None:
    for name, body in BODIES.items():
        (tmp_path / f"child_{name}.py").write_text(CHILD.format(what=name, body=textwrap.dedent(body)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))


def _run(name: str, timeout_s: float = 30.0):
    return run_child(f"child_{name}", [], model="m.tflite", runtime="Fake RT", stage="fake", timeout_s=timeout_s,
                     crash_hint="the file may be corrupt")


def test_a_child_that_ends_well_gives_its_records(children):
    done = _run("fine")
    assert done.values == {"value": 2}
    assert [r.get("begin") for r in done.records] == ["warming up", None, "doing fine", None]


def test_a_hang_is_one_line_and_ends_the_whole_process_group(children):
    started = time.monotonic()
    with pytest.raises(StageError) as caught:
        _run("hang", timeout_s=1.5)
    assert time.monotonic() - started < 15  # the forked grandchild, which holds the pipe, was killed too
    assert str(caught.value) == ("fake failed: m.tflite: no result from Fake RT within 1.5 s while doing hang "
                                 "(the runtime hung, or the model is that slow on this host)")


@pytest.mark.parametrize(("name", "signal"), [("segv", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_signal_is_one_line_naming_it_and_the_phase(children, name, signal):
    with pytest.raises(StageError) as caught:
        _run(name)
    assert str(caught.value) == (f"fake failed: m.tflite: Fake RT crashed ({signal}) in a child process while "
                                 f"doing {name}; the file may be corrupt")


def test_an_exit_without_the_end_record_is_one_line(children):
    with pytest.raises(StageError) as caught:
        _run("exit")
    assert str(caught.value) == ("fake failed: m.tflite: the Fake RT child process exited with status 3 while "
                                 "doing exit: the last words")
    with pytest.raises(StageError, match=r"exited with status 0 while doing quiet: a native printf$"):
        _run("quiet")


def test_a_refusal_is_a_usage_error(children):
    with pytest.raises(UsageError) as caught:
        _run("refuse")
    assert str(caught.value) == "m.tflite: the runtime says no"


def test_the_child_runs_the_interpreter_of_the_moment(children, monkeypatch, tmp_path):
    """sys.executable is read at each call, so the tests' stand-in interpreters (a shell script) are honoured."""
    stand_in = tmp_path / "python"
    stand_in.write_text('#!/bin/sh\necho \'{"begin": "standing in"}\'\nkill -SEGV $$\n')
    stand_in.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stand_in))
    with pytest.raises(StageError, match=r"crashed \(SIGSEGV\) in a child process while standing in;"):
        _run("fine")
