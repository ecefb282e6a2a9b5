"""Small models shaped like the open-source ones users bring (voice-activity detectors and the like): a chunk of
samples with a symbolic batch, a recurrent state with a fixed leading dimension (one state tensor, or separate
h and c), an int64 scalar sample rate, and the new state as an output. Built with the onnx helper and the
TFLite converter, so that the tests of edgekit.feeds run real files in the real runtimes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES, UNITS = 64, 16


def onnx_model(path: Path, states: tuple[str, ...] = ("state",), layers: int = 2, samples: int | str = SAMPLES,
               state_outputs: dict[str, str] | None = None) -> Path:
    """`input` [batch, samples] float32, each of `states` [layers, batch, UNITS] float32, `sr` int64 scalar;
    outputs `output` [batch] and, for each state, its update (named by `state_outputs`, default NAME + 'N',
    Silero's naming). `samples` may be a symbolic name, left for --input to set."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    outputs_named = state_outputs or {s: f"{s}N" for s in states}
    weight = numpy_helper.from_array(rng.normal(size=(SAMPLES, UNITS)).astype(np.float32), "w")
    rate = numpy_helper.from_array(np.array(16000.0, np.float32), "rate")
    nodes = [helper.make_node("MatMul", ["input", "w"], ["x"]),
             helper.make_node("Unsqueeze", ["x", "axis0"], ["xu"]),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["srf", "rate"], ["scale"])]
    axis0 = numpy_helper.from_array(np.array([0], np.int64), "axis0")
    means = []
    for state in states:
        new = outputs_named[state]
        nodes += [helper.make_node("Add", [state, "xu"], [f"{state}_sum"]),
                  helper.make_node("Tanh", [f"{state}_sum"], [new]),
                  helper.make_node("ReduceMean", [new], [f"{state}_mean"], axes=[0, 2], keepdims=0)]
        means.append(f"{state}_mean")
    nodes += [helper.make_node("Sum", means, ["mean"]), helper.make_node("Mul", ["mean", "scale"], ["output"])]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", samples])]
    inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, [layers, "batch", UNITS]) for s in states]
    inputs += [helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"])]
    outputs += [helper.make_tensor_value_info(outputs_named[s], TensorProto.FLOAT, [layers, "batch", UNITS])
                for s in states]
    graph = helper.make_graph(nodes, "stateful", inputs, outputs, [weight, rate, axis0])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def tflite_model(path: Path, layers: int = 2, dynamic_state_batch: bool = False, rate: bool = True) -> Path:
    """The same model, one `state`, through the TFLite converter: `input` [-1, SAMPLES], `state` [layers, 1,
    UNITS] ([layers, -1, UNITS] with `dynamic_state_batch`), `sr` int64 scalar; signature outputs `output` and
    `stateN`. Without `rate`, no `sr` input (float inputs only, as TFLite Micro takes them)."""
    from edgekit._tf import tf

    weight = tf.constant(np.random.default_rng(0).normal(size=(SAMPLES, UNITS)).astype(np.float32))
    state_spec = tf.TensorSpec([layers, None if dynamic_state_batch else 1, UNITS], tf.float32, name="state")

    def step(input, state, sr=None):  # noqa: A002 (the name users' models use)
        new = tf.tanh(state + tf.expand_dims(tf.matmul(input, weight), 0))
        scale = 1.0 if sr is None else tf.cast(sr, tf.float32) / 16000.0
        return {"output": tf.reduce_mean(new, axis=[0, 2]) * scale, "stateN": new}

    specs = [tf.TensorSpec([None, SAMPLES], tf.float32, name="input"), state_spec]
    module = tf.Module()
    module.step = tf.function(step if rate else lambda input, state: step(input, state),  # noqa: A002
                              input_signature=specs + ([tf.TensorSpec([], tf.int64, name="sr")] if rate else []))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
    path.write_bytes(converter.convert())
    return path
