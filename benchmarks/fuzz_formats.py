"""Fuzzing the other formats (issue 18): damaged .onnx files and .keras archives, as benchmarks/fuzz.py does
for .tflite files.

ONNX: the zoo's small CNN converted by edgekit's own converter (tf2onnx), damaged byte-wise (flip, truncate,
splice) or structurally (the ModelProto parsed, one field changed, serialized again, so the damage reaches
past the protobuf parser into the checker, shape inference and ONNX Runtime), then given to
`edgekit bench --target rpi4` (checks, an ONNX Runtime smoke run in a child, then this process) and to
`edgekit inspect`.

Keras: the same CNN saved by tf_keras, and a Keras 3 one (read by edgekit.keras3, a separate path), damaged
as zip bytes or through their members: config.json and metadata.json rewritten with JSON mutations, and
model.weights.h5 damaged (bytes, or a dataset changed with h5py), repacked into a valid zip. Each goes to
`edgekit convert --to tflite-float32`, which loads, converts and verifies the model.

Every run goes through the real command in this process (click's CliRunner), and must end with a result or
one `Error: ` line with exit 1 or 2; anything else (an exception, a traceback in the output, several error
lines) is counted as a failure with its mutant's description.
"""

from __future__ import annotations

import functools
import io
import json
import random
import re
import signal
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

BYTE_KINDS = ("flip", "truncate", "splice")
ONNX_KINDS = ("dim", "op_type", "attribute", "input_name", "initializer", "opset")
KERAS_KINDS = ("json-delete", "json-type", "json-shape", "json-class", "json-huge", "metadata", "h5-bytes",
               "h5-dataset")
HANG_S = 300  # a run this long is counted as a failure (a bench on an emulated core takes seconds)
BYTE_SHARE = {"onnx": 0.4, "keras": 0.3}  # of the mutants, those damaged as bytes; the others structurally
# The model: the zoo's small CNN at test size (8x8x1 -> 10 classes), as in benchmarks/fuzz.py.
SHAPE, CLASSES, ARGS = (8, 8, 1), 10, {"dense_units": 16, "filters": (4, 8)}


def mutate_bytes(data: bytes, rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    """'flip' (1 to 8 random bits), 'truncate' (cut at a random length) or 'splice' (a run of up to 64 of the
    file's own bytes copied over another place, so offsets stay plausible)."""
    kind = kind or rng.choice(BYTE_KINDS)
    damaged = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(len(damaged) * 8)
            damaged[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        del damaged[rng.randrange(len(damaged)):]
    else:
        length = rng.randint(1, 64)
        source, destination = rng.randrange(len(data) - length), rng.randrange(len(data) - length)
        damaged[destination:destination + length] = data[source:source + length]
    return kind, bytes(damaged)


def run_command(args: list[str], path: Path, log_lines: bool = False) -> tuple[str, str]:
    """(outcome, line) for one edgekit command in this process. Outcome 'result' (exit 0, or 3 after its one
    `Error:` line: a missed budget), 'clean_error' (exit 1 or 2 and one `Error:` line naming the file),
    'crash_contained' (such a line saying a child process crashed) or 'failure' (anything else: an exception
    out of the command, a traceback, no error line or several; `line` says what). `log_lines`: the command
    may log progress lines to stderr before its error line (convert does)."""
    from click.testing import CliRunner

    from edgekit.cli import main

    def hung(*_):
        raise TimeoutError(f"no end after {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, hung)  # a Python loop that never ends (tf_keras retrying a call)
    signal.alarm(HANG_S)
    try:
        done = CliRunner().invoke(main, args, catch_exceptions=False)
    except Exception as error:  # what the fuzzing is for: counted and shown, not raised
        return "failure", f"{type(error).__module__}.{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    if done.exit_code == 0 and not errors:
        return "result", ""
    named = path.name if done.exit_code == 3 else str(path)  # a missed budget names the model, not its path
    well_formed = (len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in done.stderr
                   and (log_lines or len(lines) == 1) and named in errors[0])
    if not well_formed or done.exit_code not in (1, 2, 3):
        return "failure", f"exit {done.exit_code}, stderr {done.stderr[-600:]!r}"
    if done.exit_code == 3:
        return "result", ""
    crashed = done.exit_code == 1 and " crashed (" in errors[0]
    return ("crash_contained" if crashed else "clean_error"), errors[0]


class Tally:
    """Outcomes of a fuzzing run, by mutation kind, with one example of each shape of error message."""

    def __init__(self, name: str, keep: Path | None = None):
        self.name, self.keep, self.outcomes, self.by_kind = name, keep, Counter(), {}
        self.errors: dict[str, str] = {}
        self.failures: list[str] = []
        self.started = time.perf_counter()

    def add(self, kind: str, outcome: str, line: str, path: Path, command: str) -> None:
        self.outcomes[outcome] += 1
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        shown = line.replace(str(path), self.name)
        if outcome == "failure":
            self.failures.append(f"{command} ({kind}): {shown}")
            if self.keep is not None:  # the mutant itself, to reproduce the failure with
                self.keep.mkdir(parents=True, exist_ok=True)
                (self.keep / f"{len(self.failures)}-{kind}{path.suffix}").write_bytes(path.read_bytes())
        elif line:  # one example per message shape: the text before the first parenthesis, numbers aside
            self.errors.setdefault(re.sub(r"\d+", "N", shown.split(" (")[0])[:100], shown)

    def counts(self, mutations: int, commands: list[str], seed: int, model_bytes: dict[str, int]) -> dict:
        runs = sum(self.outcomes.values())
        return {"mutations": mutations, "runs": runs, "commands": commands, "seed": seed, "model_bytes": model_bytes,
                "results": self.outcomes["result"], "clean_errors": self.outcomes["clean_error"],
                "crashes_contained": self.outcomes["crash_contained"], "tracebacks": self.outcomes["failure"],
                "by_mutation": {k: dict(v) for k, v in sorted(self.by_kind.items())},
                "seconds": round(time.perf_counter() - self.started, 1),
                "error_examples": sorted(self.errors.values()), "failures": self.failures[:20]}


# ---- ONNX ------------------------------------------------------------------------------------------------

@functools.cache
def tiny_onnx_model() -> bytes:
    """The small CNN with seeded weights, converted to ONNX by edgekit's converter (12 KB, opset 17)."""
    import numpy as np

    from edgekit import convert

    model = _tf_keras_model()
    return convert.onnx_float32(model, np.random.default_rng(0).uniform(0, 1, (8, *SHAPE)).astype(np.float32)).content


def _tf_keras_model():
    import numpy as np

    from edgekit.zoo import build_model

    model = build_model("small-cnn", SHAPE, CLASSES, ARGS)
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


_NUMBERS = (0, 1, 2, 3, 7, -1, -5, 2**31, 2**40, 2**62)
_OP_TYPES = ("Relu", "Conv", "MatMul", "Add", "Softmax", "Reshape", "MaxPool", "Transpose", "Gemm", "Identity",
             "Loop", "If", "Scan", "Concat", "NoSuchOp", "")
_DATA_TYPES = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 17, 21, 23, 99)


def mutate_onnx(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A byte mutation or, as often, one structural change to the parsed ModelProto (ONNX_KINDS)."""
    if rng.random() < BYTE_SHARE["onnx"]:
        return mutate_bytes(data, rng)
    import onnx

    model = onnx.load_from_string(data)
    graph, kind = model.graph, rng.choice(ONNX_KINDS)
    node = rng.choice(graph.node)
    if kind == "dim":  # a declared dimension of an input, output or initializer, changed, added or removed
        if rng.random() < 0.5:
            dims = rng.choice([*graph.input, *graph.output]).type.tensor_type.shape.dim
            if rng.random() < 0.2:
                dims.add().dim_value = rng.choice(_NUMBERS[:5])
            elif rng.random() < 0.1 and len(dims):
                del dims[rng.randrange(len(dims))]
            elif len(dims):
                dims[rng.randrange(len(dims))].dim_value = rng.choice(_NUMBERS)
        else:
            tensor = rng.choice(graph.initializer)
            tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(_NUMBERS)
    elif kind == "op_type":
        node.op_type = rng.choice(_OP_TYPES)
        if rng.random() < 0.2:
            node.domain = rng.choice(("ai.onnx.ml", "com.microsoft", "no.such.domain"))
    elif kind == "attribute":
        with_attributes = [n for n in graph.node if n.attribute] or [node]
        node = rng.choice(with_attributes)
        change = rng.choice(("value", "value", "type", "delete", "add"))
        if change == "add" or not node.attribute:
            node.attribute.append(onnx.helper.make_attribute(rng.choice(("axis", "group", "no_such", "pads")),
                                                             rng.choice(_NUMBERS)))
        elif change == "delete":
            del node.attribute[rng.randrange(len(node.attribute))]
        else:
            attribute = rng.choice(node.attribute)
            if change == "type":
                attribute.CopyFrom(onnx.helper.make_attribute(attribute.name, rng.choice(("x", 1.5, [1.0], 3))))
            elif attribute.ints:
                attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice(_NUMBERS)
            else:
                attribute.i = rng.choice(_NUMBERS)
    elif kind == "input_name":
        names = [o for n in graph.node for o in n.output] + [t.name for t in graph.initializer]
        change = rng.choice(("node", "node", "graph_input", "graph_output", "drop"))
        if change == "drop" and len(node.input) > 1:
            del node.input[rng.randrange(len(node.input))]
        elif change == "graph_input":
            graph.input[0].name = rng.choice((*names, "no_such_tensor", ""))
        elif change == "graph_output":
            graph.output[0].name = rng.choice((*names, "no_such_tensor", ""))
        elif node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice((*names, "no_such_tensor", ""))
    elif kind == "initializer":
        tensor = rng.choice(graph.initializer)
        change = rng.choice(("dtype", "shorter", "longer", "empty"))
        if change == "dtype":
            tensor.data_type = rng.choice(_DATA_TYPES)
        elif change == "shorter":
            tensor.raw_data = tensor.raw_data[:rng.randrange(max(len(tensor.raw_data), 1))]
        elif change == "longer":
            tensor.raw_data = tensor.raw_data + bytes(rng.randint(1, 64))
        else:
            tensor.ClearField("raw_data")
    else:  # the opset or IR version
        if rng.random() < 0.6:
            rng.choice(model.opset_import).version = rng.choice((0, 1, 6, 7, 11, 13, 21, 22, 23, 24, 99, 10000))
        elif rng.random() < 0.5:
            model.ir_version = rng.choice((1, 2, 3, 7, 10, 11, 12, 99))
        else:
            del model.opset_import[:]
    return kind, model.SerializeToString()


def fuzz_onnx(count: int = 300, seed: int = 0, folder: Path | None = None, model: bytes | None = None,
              keep: Path | None = None) -> dict:
    """`count` mutations of the ONNX model, each given to `edgekit bench --target rpi4` and `edgekit inspect`."""
    model = model if model is not None else tiny_onnx_model()
    rng, tally = random.Random(seed), Tally("mutant.onnx", keep)
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-onnx-", dir=folder) as work:
        path = Path(work) / "mutant.onnx"
        for _ in range(count):
            kind, damaged = mutate_onnx(model, rng)
            path.write_bytes(damaged)
            for command, args in (("bench", ["bench", str(path), "--target", "rpi4", "--runs", "10", "--warmup", "0"]),
                                  ("inspect", ["inspect", str(path)])):
                tally.add(kind, *run_command(args, path), path, command)
    return tally.counts(count, ["bench --target rpi4", "inspect"], seed, {"onnx": len(model)})


# ---- Keras -----------------------------------------------------------------------------------------------

@functools.cache
def tiny_keras_models() -> dict[str, bytes]:
    """The small CNN as a tf_keras .keras archive ('tf_keras') and as a Keras 3 one ('keras3'), seeded and
    without save timestamps, so the same seed gives the same mutants."""
    from edgekit.model_files import _without_timestamps, keras_bytes

    return {"tf_keras": keras_bytes(_tf_keras_model()), "keras3": _without_timestamps(_keras3_archive())}


def _keras3_archive() -> bytes:
    from edgekit._tf import tf  # TensorFlow started as edgekit starts it, before Keras 3

    tf.random.set_seed(0)
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE, name="input")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(name="pool")(x))
    x = keras.layers.Dense(16, activation="relu", name="dense1")(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="classes")(x))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _members(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        return {name: source.read(name) for name in source.namelist()}


def _repack(members: dict[str, bytes]) -> bytes:
    result = io.BytesIO()
    with zipfile.ZipFile(result, "w") as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return result.getvalue()


_VALUES = (None, True, 0, -3, 2.5, "", "relu", "no_such_value", [], [None], {}, {"class_name": "Dense"})
_SHAPES = (0, -1, 3, 1000, [], [0], [-1, 3], [3, 3, 3], [None, 8, 8], [None, 0, 8, 1], [None, 8, 8, 1, 1], "3x3")
_CLASSES = ("NoSuchLayer", "Lambda", "Dense", "Conv2D", "Functional", "Sequential", "LSTM", "", None, 3)
_HUGE = (2**31, 2**63, 10**12, 1e308, -2**31, float("inf"), float("nan"), 10**400)


def _places(value, path=()):
    """(container, key) of every value inside a JSON document, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield value, key, path + (key,)
        yield from _places(item, path + (key,))


def mutate_config(config: dict, rng: random.Random, kind: str) -> None:
    """One JSON mutation of a model config, in place (KERAS_KINDS 'json-*')."""
    places = list(_places(config))
    if kind == "json-delete":
        container, key, _ = rng.choice([p for p in places if isinstance(p[0], dict)])
        del container[key]
    elif kind == "json-type":
        container, key, _ = rng.choice(places)
        container[key] = rng.choice([v for v in _VALUES if type(v) is not type(container[key])])
    elif kind == "json-shape":
        shaped = [p for p in places if p[1] in ("units", "filters", "kernel_size", "strides", "pool_size",
                                                "batch_input_shape", "batch_shape", "target_shape", "input_shape",
                                                "shape", "dilation_rate")] or places
        container, key, _ = rng.choice(shaped)
        container[key] = rng.choice(_SHAPES)
    elif kind == "json-class":
        named = [p for p in places if p[1] in ("class_name", "module", "registered_name")]
        container, key, _ = rng.choice(named)
        container[key] = rng.choice(_CLASSES if key == "class_name" else ("keras.layers", "my_package.layers",
                                                                           None, "keras.src.ops.numpy", ""))
    else:  # json-huge
        numbers = [p for p in places if isinstance(p[0][p[1]], int | float) and not isinstance(p[0][p[1]], bool)]
        container, key, _ = rng.choice(numbers or places)
        container[key] = rng.choice(_HUGE)


def _damaged_weights(weights: bytes, rng: random.Random) -> bytes:
    """model.weights.h5 with one dataset changed through h5py: deleted, reshaped, retyped, or its group renamed."""
    import h5py
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.h5"
        path.write_bytes(weights)
        with h5py.File(path, "r+") as f:
            datasets: list[str] = []
            f.visititems(lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None)
            name = rng.choice(datasets)
            values = f[name][()]
            change = rng.choice(("delete", "shape", "dtype", "rename", "scalar", "extra"))
            if change != "rename":
                del f[name]
            if change == "shape":
                f[name] = np.resize(values, (*values.shape[:-1], values.shape[-1] + rng.choice((-1, 1, 5))))
            elif change == "dtype":
                f[name] = values.astype(rng.choice(("float64", "int8", "float16", "S4")))
            elif change == "rename":
                f.move(name.rsplit("/", 2)[0], name.rsplit("/", 2)[0] + "_renamed")
            elif change == "scalar":
                f[name] = np.float32(rng.choice((0.0, float("nan"), 1e38)))
            elif change == "extra":
                f[name] = values
                f[name.rsplit("/", 1)[0] + "/9"] = values
        return path.read_bytes()


def mutate_keras(archive: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A byte mutation of the zip, or one change to a member, repacked into a valid zip (KERAS_KINDS)."""
    if rng.random() < BYTE_SHARE["keras"]:
        return mutate_bytes(archive, rng)
    members, kind = _members(archive), rng.choice(KERAS_KINDS)
    if kind.startswith("json-"):
        config = json.loads(members["config.json"])
        mutate_config(config, rng, kind)
        members["config.json"] = json.dumps(config).encode()
    elif kind == "metadata":
        metadata = json.loads(members["metadata.json"])
        change = rng.choice(("version", "version", "delete", "garbage"))
        if change == "version":
            metadata["keras_version"] = rng.choice(("3.0.0", "2.15.0", "3", "4.0.0", "", 3, None, ["3"]))
        elif change == "delete":
            del members["metadata.json"]
        else:
            members["metadata.json"] = rng.choice((b"", b"{", b"[]", b"\xff\xfe", b"null"))
        if "metadata.json" in members and change == "version":
            members["metadata.json"] = json.dumps(metadata).encode()
    elif kind == "h5-bytes":
        members["model.weights.h5"] = mutate_bytes(members["model.weights.h5"], rng)[1]
    else:
        members["model.weights.h5"] = _damaged_weights(members["model.weights.h5"], rng)
    return kind, _repack(members)


def fuzz_keras(count: int = 300, seed: int = 0, folder: Path | None = None,
               models: dict[str, bytes] | None = None, keep: Path | None = None) -> dict:
    """`count` mutations of the .keras archives (tf_keras and Keras 3 in turn), each given to
    `edgekit convert --to tflite-float32`."""
    models = models if models is not None else tiny_keras_models()
    rng, tally = random.Random(seed), Tally("mutant.keras", keep)
    sources: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-keras-", dir=folder) as work:
        path, out = Path(work) / "mutant.keras", Path(work) / "mutant.float32.tflite"
        for number in range(count):
            source = sorted(models)[number % len(models)]
            kind, damaged = mutate_keras(models[source], rng)
            path.write_bytes(damaged)
            outcome, line = run_command(["convert", str(path), "--to", "tflite-float32", "--out", str(out)], path,
                                        log_lines=True)
            tally.add(kind, outcome, line, path, f"convert {source}")
            sources[f"{source} {outcome}"] += 1
    counts = tally.counts(count, ["convert --to tflite-float32"], seed, {k: len(v) for k, v in models.items()})
    return {**counts, "by_source": dict(sorted(sources.items()))}
