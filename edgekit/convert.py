"""Conversion: a tf_keras model -> .tflite or .onnx bytes in one of FORMATS, each verified against its
source on the same inputs before it is returned. A mismatch is an error, never a warning.

Float formats are held to a tolerance on the largest output difference; quantized formats to agreement
with the Keras model (tasks.Task.agreement: the same class, or for value outputs a mean difference small
against their spread), because rounding to 8 bits moves every output a little but should move few answers.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.errors import StageError, UsageError, about, unknown_name
from edgekit.runtimes.litert import TFLiteRunner
from edgekit.runtimes.onnx import OnnxRunner

log = logging.getLogger("edgekit")

# Largest |difference| between a float artifact and its Keras source, as a share of the output's scale
# (its largest |value|, or 1 when that is smaller, so probabilities are held to the absolute figure).
# float32: the runtimes sum in another order and fuse ops, which moves outputs by about 1e-6 of their
# scale (2e-6 measured on a linear-output CNN and an 8-layer autoencoder); 1e-4 leaves a hundredfold margin.
FLOAT_ATOL = 1e-4
# float16 weights: each weight is rounded to 11 significant bits (relative error up to 2**-11 = 4.9e-4),
# and the errors of successive layers add up: measured 1e-3 on the test CNN's probabilities, 5e-4 of the
# scale of a linear-output CNN, 2.6e-3 of an 8-layer autoencoder's. 2e-2 (about 40 rounding steps) leaves
# room for deeper models, while a real fault (a wrong op or layout) moves outputs by a tenth of their scale.
FLOAT16_ATOL = 2e-2
INT8_MIN_AGREEMENT = 0.95  # share of samples where a quantized artifact picks the Keras model's class
ONNX_OPSET = 17
CHECK_SAMPLES = 256  # validation inputs a conversion is checked on
RANDOM_CHECK_SAMPLES = 64  # seeded uniform [0, 1) inputs, when no data is given (float formats)
CALIBRATION_BATCH = 32  # samples per ONNX Runtime calibration run


@dataclass(frozen=True)
class Conversion:
    name: str  # variant name, also the file stem: float32, float16, dynamic, int8, int16x8, onnx, onnx-int8
    format: str  # tflite | onnx
    precision: str  # float32 | float16 | dynamic (int8 weights, float activations) | int8 | int16x8
    content: bytes = field(repr=False)
    check: dict[str, Any] = field(default_factory=dict)  # the verification record

    @property
    def filename(self) -> str:
        if self.format == "onnx":
            return "model.onnx" if self.precision == "float32" else f"model.{self.precision}.onnx"
        return f"{self.name}.tflite"


@dataclass(frozen=True)
class Format:
    """One `--to` value: how to make the bytes, and how the result is checked."""

    name: str
    variant: str  # Conversion.name
    format: str  # tflite | onnx
    precision: str
    suffix: str  # follows the model's stem in the default output name
    label: str  # how messages name it
    calibrated: bool  # needs training samples to set its integer ranges
    tolerance: float | None  # float formats: FLOAT_ATOL or FLOAT16_ATOL; None: checked by agreement
    make: Callable[[Any, np.ndarray | None], bytes]

    @property
    def extension(self) -> str:
        return f".{self.format}"


FORMATS: dict[str, Format] = {}


def _format(name: str, variant: str, precision: str, suffix: str, label: str, tolerance: float | None = None,
            calibrated: bool = False):
    def register(make: Callable[[Any, np.ndarray | None], bytes]):
        fmt = "onnx" if name.startswith("onnx") else "tflite"
        FORMATS[name] = Format(name, variant, fmt, precision, suffix, label, calibrated, tolerance, make)
        return make

    return register


def convert(model, fmt: str, x_calibration: np.ndarray | None = None, x_check: np.ndarray | None = None,
            task: str = "classification", inputs_from: str = "given") -> Conversion:
    """Convert `model` to `fmt` (a FORMATS name) and verify the result against the model on `x_check`, or,
    when that is None, on RANDOM_CHECK_SAMPLES seeded uniform [0, 1) inputs. `x_calibration` (training
    samples) sets the integer ranges of the calibrated formats, which require it. `inputs_from` names the
    check inputs in the verification record."""
    spec = check_request(fmt, x_calibration is not None, task)
    shape = input_shape(model)
    if x_check is None:
        x_check, inputs_from = random_inputs(shape), "random"
    content = spec.make(model, x_calibration)
    return _verified(Conversion(spec.variant, spec.format, spec.precision, content), spec, model, x_check, task,
                     inputs_from)


def convert_file(model_path: Path, fmt: str, out: Path | None = None, data_spec: str | None = None,
                 calibration_samples: int = 200, task: str = "classification",
                 unsafe_load: bool = False) -> tuple[Path, Conversion]:
    """`edgekit convert`: a Keras model file to `fmt`, calibrated on `calibration_samples` training samples of
    `data_spec` and verified on its validation split (without data: on random inputs), written to `out`
    (default: `default_output`). Returns (the file written, the conversion)."""
    spec = check_request(fmt, data_spec is not None, task)
    out = Path(out or default_output(model_path, fmt))
    if out.suffix != spec.extension:
        raise UsageError(f"--out '{out}' does not end in {spec.extension}, the suffix of {fmt} files")
    from edgekit import data
    from edgekit._files import write_atomic
    from edgekit.model_files import load_model

    with about(model_path):  # a failed verification, or a model of open shape: the line names the file
        model = load_model(model_path, unsafe=unsafe_load)
        x_calibration = x_check = None
        if data_spec:
            dataset = data.load_for_model(data_spec, input_shape(model), task)
            x_calibration, x_check = dataset.representative(calibration_samples), dataset.x_val[:CHECK_SAMPLES]
        conversion = convert(model, fmt, x_calibration, x_check, task, inputs_from="validation")
    write_atomic(out, conversion.content)
    return out, conversion


def check_request(fmt: str, has_calibration: bool, task: str = "classification") -> Format:
    """The Format for `fmt`, or the UsageError for an unknown name, task or missing calibration data: checked
    before any model is loaded."""
    from edgekit.tasks import TASKS

    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS, "edgekit convert --help")
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'; tasks: {', '.join(TASKS)}")
    spec = FORMATS[fmt]
    if spec.calibrated and not has_calibration:
        free = [name for name, other in FORMATS.items() if not other.calibrated]
        raise UsageError(f"--to {fmt} needs --data SPEC: its training samples calibrate the integer ranges; "
                         f"without data, convert to {', '.join(free)}")
    return spec


def default_output(model_path: Path, fmt: str) -> Path:
    """MODEL's stem and the format's suffix, next to MODEL: model.keras -> model.int16x8.tflite."""
    model_path = Path(model_path)
    stem = model_path.name if model_path.is_dir() else model_path.stem
    return model_path.parent / f"{stem}{FORMATS[fmt].suffix}"


def input_shape(model) -> tuple[int, ...]:
    """The model's input shape without the batch dimension; one input, one output and fixed sizes only."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise UsageError(f"model '{model.name}' has no defined inputs; build it on a keras.Input first")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(f"model '{model.name}' has {len(inputs)} inputs and {len(outputs)} outputs; edgekit "
                         "converts models with one input and one output")
    shape = tuple(inputs[0].shape[1:])
    if any(size is None for size in shape):
        raise UsageError(f"model '{model.name}' has an input of open shape "
                         f"{'x'.join('?' if s is None else str(s) for s in shape)}; give its keras.Input a fixed "
                         "shape")
    return shape


def random_inputs(shape: tuple[int, ...], count: int = RANDOM_CHECK_SAMPLES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, *shape)).astype(np.float32)


def summary(conversion: Conversion) -> str:
    """The verification figure in words: 'agrees with Keras on 99.4% of 180 validation inputs (at least 95%)'."""
    check = conversion.check
    inputs = f"{check['inputs']} {'' if check['inputs_from'] == 'given' else check['inputs_from'] + ' '}inputs"
    if "agreement" in check:
        return f"{_agreement(check['task'], check['agreement'], inputs)} (at least {check['min_agreement']:.0%})"
    return f"differs from Keras by at most {check['max_abs_diff']:.2g} on {inputs} (tolerance {check['tolerance']:.2g})"


def _agreement(task: str, agreement: float, inputs: str) -> str:
    if task in ("classification", "binary"):
        return f"agrees with Keras on {agreement:.1%} of {inputs}"
    return f"agrees with Keras to {agreement:.1%} (1 - mean |difference| / output spread) on {inputs}"


# The conversions, one per format. Each returns unverified bytes; `convert` checks them.

@_format("tflite-float32", "float32", "float32", ".float32.tflite", "float32 TFLite", FLOAT_ATOL)
def _tflite_float32(model, _calibration=None) -> bytes:
    return _keras_tflite(model, "float32 TFLite")


@_format("tflite-float16", "float16", "float16", ".float16.tflite", "float16 TFLite", FLOAT16_ATOL)
def _tflite_float16(model, _calibration=None) -> bytes:
    """float16 weights, float32 input, output and arithmetic (on runtimes without half-precision math)."""
    from edgekit._tf import tf

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return converter

    return _keras_tflite(model, "float16 TFLite", configure)


@_format("tflite-dynamic", "dynamic", "dynamic", ".dynamic.tflite", "dynamic-range TFLite")
def _tflite_dynamic(model, _calibration=None) -> bytes:
    """int8 weights; float input and output, activations quantized per batch at run time (no calibration)."""
    from edgekit._tf import tf

    def configure(converter):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter

    return _keras_tflite(model, "dynamic-range TFLite", configure)


@_format("tflite-int8", "int8", "int8", ".int8.tflite", "int8 TFLite", calibrated=True)
def _tflite_int8(model, calibration: np.ndarray) -> bytes:
    return _keras_tflite(model, "int8 TFLite", lambda converter: _integer_settings(
        converter, calibration, "TFLITE_BUILTINS_INT8", "int8"))


@_format("tflite-int16x8", "int16x8", "int16x8", ".int16x8.tflite", "int16x8 TFLite", calibrated=True)
def _tflite_int16x8(model, calibration: np.ndarray) -> bytes:
    return _keras_tflite(model, "int16x8 TFLite", lambda converter: _integer_settings(
        converter, calibration, INT16X8_OPS, "int16"))


@_format("onnx", "onnx", "float32", ".onnx", "float32 ONNX", FLOAT_ATOL)
def _onnx_float32(model, _calibration=None) -> bytes:
    return _onnx_proto(model).SerializeToString()


@_format("onnx-int8", "onnx-int8", "int8", ".int8.onnx", "int8 ONNX", calibrated=True)
def _onnx_int8(model, calibration: np.ndarray) -> bytes:
    """QDQ: QuantizeLinear / DequantizeLinear pairs around the float ops, int8 activations and per-channel
    int8 weights, with ranges from ONNX Runtime's min-max calibration on `calibration`."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    proto = _onnx_proto(model)
    input_name = proto.graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = (calibration[start:start + CALIBRATION_BATCH].astype(np.float32)
                             for start in range(0, len(calibration), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    native_log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as folder:
        source, prepared, quantized = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(proto, source)
        try:
            with _quiet_python_warnings(), captured_stderr_fd() as native_log:
                # shape inference and graph clean-up first, as ONNX Runtime's quantization guide asks (ONNX's
                # shape inference: the symbolic one needs sympy, and tf2onnx graphs have static shapes anyway)
                quant_pre_process(source, prepared, skip_symbolic_shape=True)
                quantize_static(prepared, quantized, Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        except Exception as e:  # ONNX Runtime raises many kinds; the user needs the first line
            raise StageError("convert", f"int8 ONNX quantization: {_first_line(e, native_log)}") from e
        return quantized.read_bytes()


def int8_converter(model, representative: np.ndarray):
    """The TFLite converter set up for a full-integer model (int8 input and output), calibrated on
    `representative` samples. Unverified: `convert` is the stage that also checks the result."""
    return _integer_converter(model, representative, "TFLITE_BUILTINS_INT8", "int8")


def int16x8_converter(model, representative: np.ndarray):
    """The TFLite converter for int16 activations, input and output with int8 weights (TFLite's 16x8 mode),
    calibrated on `representative`. An op without a 16x8 kernel fails the conversion rather than falling
    back to float, so the file is what was asked for."""
    return _integer_converter(model, representative, INT16X8_OPS, "int16")


INT16X8_OPS = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"


def _integer_converter(model, representative: np.ndarray, ops_set: str, io_type: str):
    from edgekit._tf import tf

    return _integer_settings(tf.lite.TFLiteConverter.from_keras_model(model), representative, ops_set, io_type)


def _integer_settings(converter, representative: np.ndarray, ops_set: str, io_type: str):
    from edgekit._tf import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _calibration_samples(representative)
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, ops_set)]
    converter.inference_input_type = converter.inference_output_type = getattr(tf, io_type)
    return converter


# The stage functions `edgekit build` calls: the same conversions and checks.

def _calibration_samples(representative: np.ndarray) -> Iterator[list[np.ndarray]]:
    """The converter's representative dataset: one sample a batch, with a progress bar."""
    from edgekit import progress

    with progress.task("calibrate", len(representative)) as bar:
        for sample in representative:
            yield [sample[np.newaxis]]
            bar.advance()


def tflite_float32(model, check_inputs: np.ndarray) -> Conversion:
    return convert(model, "tflite-float32", None, check_inputs)


def tflite_int8(model, representative: np.ndarray, check_inputs: np.ndarray,
                task: str = "classification") -> Conversion:
    """Full-integer model: int8 weights, activations, input and output, calibrated on `representative`
    (training samples), verified by agreement on `check_inputs`."""
    return convert(model, "tflite-int8", representative, check_inputs, task)


def onnx_float32(model, check_inputs: np.ndarray) -> Conversion:
    return convert(model, "onnx", None, check_inputs)


def _onnx_proto(model):
    import onnx

    from edgekit._tf import tf, tf2onnx

    signature = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    native_log: list[str] = []
    try:
        with captured_stderr_fd() as native_log:
            proto, _ = tf2onnx().convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
        _canonical_names(proto)
        onnx.checker.check_model(proto)
    except Exception as e:  # tf2onnx raises many kinds; the user needs the first line
        raise StageError("convert", f"ONNX conversion: {_first_line(e, native_log)}") from e
    return proto


_COUNTER = re.compile(r"__(\d+)")


def _canonical_names(proto) -> None:
    """Make tf2onnx's output the same bytes for the same model in any process. Two of its names depend on the
    process: the `__N` suffixes come from a process-wide counter (a second conversion in one process numbers
    from where the first stopped), and constants of equal value are merged under the name of whichever one a
    set yields first (string hashing differs per process). Counters are renumbered in order of first
    appearance; a merged constant (read by several nodes) is named `shared_constant_K` in order of first use;
    the initializers are listed in order of first use."""
    graph = proto.graph
    if any(a.g.node or a.graphs for node in graph.node for a in node.attribute):
        return  # a subgraph (If, Loop) may read outer names: left as tf2onnx named them
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    initializers = {i.name for i in graph.initializer}
    shared: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            if name in initializers and users[name] > 1 and name not in shared:
                shared[name] = f"shared_constant_{len(shared)}"
    numbers: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in shared:
            return shared[name]
        return _COUNTER.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers))), name)

    def rename_dims(value) -> None:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = rename(dim.dim_param)

    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = rename(value.name)
        rename_dims(value)
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
    order = {name: i for i, name in enumerate(dict.fromkeys(n for node in graph.node for n in node.input))}
    ordered = sorted(graph.initializer, key=lambda i: (order.get(i.name, len(order)), i.name))
    copies = [type(i)() for i in ordered]
    for copy, original in zip(copies, ordered, strict=True):
        copy.CopyFrom(original)
    del graph.initializer[:]
    graph.initializer.extend(copies)


def _verified(conversion: Conversion, spec: Format, model, inputs: np.ndarray, task: str,
              inputs_from: str) -> Conversion:
    from edgekit.tasks import TASKS

    runner = OnnxRunner if spec.format == "onnx" else TFLiteRunner
    expected = model.predict(inputs, verbose=0)
    where = f"{len(inputs)} {'' if inputs_from == 'given' else inputs_from + ' '}inputs"
    if not np.all(np.isfinite(expected)):  # no conversion of it can be checked: damaged or overflowing weights
        raise StageError("verify", f"the Keras model's own output is NaN or infinite on {where}; check its weights")
    actual = _run_artifact(runner, conversion.content, inputs, spec.label)
    difference = float(np.max(np.abs(expected - actual.reshape(expected.shape))))
    check: dict[str, Any] = {"format": spec.name, "against": "keras", "inputs": len(inputs),
                             "inputs_from": inputs_from, "max_abs_diff": difference}
    if spec.tolerance is not None:
        scale = max(1.0, float(np.max(np.abs(expected))))
        tolerance = spec.tolerance * scale
        check |= {"tolerance": tolerance, "output_scale": scale}
        if not difference <= tolerance:
            raise StageError("verify", f"{spec.label} output differs from Keras by up to {difference:.3g} on "
                             f"{where}; tolerance is {tolerance:.3g} ({spec.tolerance:g} of the output scale "
                             f"{scale:.3g})")
    else:
        agreement = TASKS[task].agreement(expected, actual.reshape(expected.shape))
        check |= {"task": task, "agreement": agreement, "min_agreement": INT8_MIN_AGREEMENT}
        if not agreement >= INT8_MIN_AGREEMENT:
            hint = "; pass --data to check on real samples" if inputs_from == "random" else ""
            raise StageError("verify", f"{spec.label} {_agreement(task, agreement, where)} ({task}); at least "
                             f"{INT8_MIN_AGREEMENT:.0%} is required{hint}")
    return Conversion(conversion.name, conversion.format, conversion.precision, conversion.content, check)


def _keras_tflite(model, what: str, configure: Callable[[Any], Any] = lambda converter: converter) -> bytes:
    """The TFLite file of a tf_keras model, from the converter `configure` sets up. The converter reads the
    model from a SavedModel that holds its serving signature only (`serving_tflite`); should that export
    fail, the conversion runs again from tf_keras's own full export (TFLiteConverter.from_keras_model), so
    a model converts exactly when it did before, and a real conversion error is the one that path reports."""
    try:
        return serving_tflite(model, what, configure)
    except Exception as e:  # the full export below reports what is really wrong
        log.debug("converter: the serving-signature export failed (%s); using tf_keras's full export", e)
    from edgekit._tf import tf

    return _run_converter(configure(tf.lite.TFLiteConverter.from_keras_model(model)), what)


def serving_tflite(model, what: str, configure: Callable[[Any], Any] = lambda converter: converter) -> bytes:
    """`configure`'s converter run on the model's serving signature alone (edgekit._tf.serving_export): the
    bytes TFLiteConverter.from_keras_model(model) gives, without tracing every layer's functions first."""
    from edgekit._tf import serving_export, tf

    with serving_export(model) as exportable:
        return _run_converter(configure(tf.lite.TFLiteConverter.from_keras_model(exportable)), what)


def _run_converter(converter, what: str) -> bytes:
    native_log: list[str] = []
    try:
        with captured_stderr_fd() as native_log:
            return converter.convert()
    except Exception as e:
        raise StageError("convert", f"{what} conversion: {_first_line(e, native_log)}") from e
    finally:
        for line in native_log:
            log.debug("converter: %s", line)


def _run_artifact(runner: Callable, content: bytes, inputs: np.ndarray, what: str) -> np.ndarray:
    try:
        return runner(content).predict(inputs)
    except Exception as e:
        raise StageError("verify", f"{what} does not run: {_first_line(e, [])}") from e


@contextlib.contextmanager
def _quiet_python_warnings() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger at WARNING, which also installs a stderr
    handler on a root logger without one; hold such records back while it runs."""
    root = logging.getLogger()
    saved, placeholder = root.level, logging.NullHandler()
    root.addHandler(placeholder)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(saved)
        root.removeHandler(placeholder)


def _first_line(error: Exception, native_log: list[str]) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in native_log if "error" in line.lower()]
    return (errors[-1] if errors else lines[0]).strip()[:300]
