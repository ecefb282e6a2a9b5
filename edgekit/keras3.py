"""Models saved by Keras 3, rebuilt in tf_keras so that tensorflow-model-optimization can work on them.

tf_keras cannot read a Keras 3 file (the config format differs), and tfmot only wraps tf_keras models. So
the file is loaded with Keras 3 itself, in this process (both Keras packages import side by side once
edgekit._tf has set TF_USE_LEGACY_KERAS), and its graph is walked: each layer's config is translated to
tf_keras's vocabulary, the tf_keras layer is called on the tensors its Keras 3 twin was called on, and the
weights are copied. Nested models (a pretrained base inside a Functional model) are inlined, so the result is
one flat graph that QAT can wrap. The rebuilt model is then run beside the original on seeded random inputs;
any difference beyond tolerance is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import StageError, UsageError, about
from edgekit.keras3_config import (
    COMPOSED_ACTIVATIONS,
    MODEL_CLASSES,
    SAME_ACTIVATIONS,
    check_config,
    entry_name,
    is_op,
    names_in,
    read_config,
    saved_keras_version,
    translate_config,
)

log = logging.getLogger("edgekit")

TOLERANCE = 1e-5  # largest |difference| allowed, relative to the output's scale when that is above 1
CHECK_BATCH = 4  # seeded random samples run through both models
FREE_DIMENSION = 32  # size given to a dimension the model leaves open (a variable sequence length)


def is_keras3_file(path: str | Path) -> bool:
    """True for a `.keras` zip or an `.h5` file whose metadata says Keras 3 saved it."""
    version = saved_keras_version(Path(path))
    return version is not None and version.split(".")[0] == "3"


def import_keras3(path: str | Path, unsafe: bool = False):
    """The Keras 3 model in `path` rebuilt as a flat tf_keras Functional model with the same weights.

    Raises UsageError for a file that is not a Keras 3 model, a subclassed model, a layer the importer does
    not rebuild, or (unless `unsafe`) a Lambda layer; StageError when the rebuilt model's outputs differ
    from the original's on seeded random inputs."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"model file '{path}' does not exist")
    if not is_keras3_file(path):
        raise UsageError(f"'{path}' is not a model saved by Keras 3 (a .keras or .h5 file whose metadata "
                         "says keras_version 3.x)")
    with about(path):  # each line names the file
        check_config(read_config(path), unsafe=unsafe)
        original = _load_with_keras3(path, unsafe)
        rebuilt = rebuild(original)
        difference = max_output_difference(original, rebuilt)
    log.info("imported Keras 3 model '%s': %d layers, outputs within %.2g of the original",
             original.name, len(rebuilt.layers), difference)
    return rebuilt


def rebuild(original):
    """A flat tf_keras Functional model computing what the loaded Keras 3 `original` computes."""
    from edgekit._tf import keras as tf_keras

    if not original.inputs:
        raise UsageError(f"model '{original.name}' has no input shape (it was never built); build it, for "
                         "example with a keras.Input layer first, and save it again")
    builder = _Rebuilder(tf_keras, names_in(original.get_config()))
    inputs = [tf_keras.Input(batch_shape=tuple(tensor.shape), dtype=str(tensor.dtype),
                             name=builder.claim(_tensor_name(tensor) or f"input_{index}", ()))
              for index, tensor in enumerate(original.inputs)]
    outputs = builder.model(original, inputs, path=())
    model = tf_keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=original.name)
    builder.copy_weights()
    return model


def max_output_difference(original, rebuilt, seed: int = 0) -> float:
    """Run both models on the same seeded random inputs; raise StageError beyond TOLERANCE, else return
    the largest |difference|."""
    rng = np.random.default_rng(seed)
    samples = [_random_input(rng, tuple(tensor.shape), str(tensor.dtype)) for tensor in original.inputs]
    feed = samples if len(samples) > 1 else samples[0]
    expected = _flat_arrays(original(feed, training=False))
    actual = _flat_arrays(rebuilt(feed, training=False))
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want.shape != got.shape:
            raise StageError("import", f"output {index} of the rebuilt model has shape {got.shape}, the Keras 3 "
                                       f"model's has {want.shape}")
        difference = float(np.max(np.abs(want - got))) if want.size else 0.0
        allowed = TOLERANCE * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        if not difference <= allowed:  # also catches NaN
            raise StageError("import", f"the rebuilt tf_keras model's output {index} differs from the Keras 3 "
                                       f"model's by up to {difference:.3g} on {CHECK_BATCH} seeded random inputs "
                                       f"(allowed {allowed:.3g}); please report the model's layers")
        worst = max(worst, difference)
    return worst


def _load_with_keras3(path: Path, unsafe: bool):
    from edgekit._tf import tf  # noqa: F401  (TensorFlow started as edgekit starts it, before Keras 3 imports it)

    try:
        import keras
    except ImportError as error:
        raise UsageError(f"reading a Keras 3 model needs the keras package (3.x): {error}") from error
    if not keras.__version__.startswith("3."):
        raise UsageError(f"reading a Keras 3 model needs keras 3.x; keras {keras.__version__} is installed")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as error:  # Keras raises many types for a file it cannot read
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = "; Keras 3 reads its .keras files more completely than .h5, so save the model as .keras" \
            if path.suffix.lower() in (".h5", ".hdf5") else ""
        raise UsageError(f"Keras 3 cannot load '{path}': {first_line}{hint}") from error


# --- rebuilding ----------------------------------------------------------------------------------------


def _tensor_name(tensor) -> str | None:
    name = getattr(tensor, "name", None)
    return name.split(":")[0] if name else None


class _Rebuilder:
    """Walks a loaded Keras 3 model and calls tf_keras twins of its layers on tf_keras tensors."""

    def __init__(self, tf_keras, name_counts: dict[str, int]):
        self.tf_keras = tf_keras
        self.name_counts = name_counts  # how often each layer name occurs in the whole tree of models
        self.used: set[str] = set()
        self.callables: dict[int, Callable] = {}  # id(Keras 3 layer) -> its tf_keras stand-in, so sharing holds
        self.weight_pairs: list[tuple[Any, Any, str]] = []  # (Keras 3 layer, tf_keras layer, where)

    # Layer names stay as in the Keras 3 model; a nested model's layer whose name also occurs elsewhere in
    # the tree gets the nested model's name in front, so pruning can still target layers by name.
    def claim(self, name: str, path: tuple[str, ...]) -> str:
        candidate = name if not path or self.name_counts.get(name, 0) <= 1 else "_".join((*path, name))
        unique, suffix = candidate, 1
        while unique in self.used:
            unique, suffix = f"{candidate}_{suffix}", suffix + 1
        self.used.add(unique)
        return unique

    def model(self, model, inputs: list, path: tuple[str, ...], training: bool | None = None) -> list:
        config = model.get_config()
        if type(model).__name__ == "Sequential":
            (tensor,) = inputs
            for entry in config["layers"]:
                if entry["class_name"] == "InputLayer":
                    continue
                (tensor,) = self.call(model, entry, [tensor], {}, path, training)
            return [tensor]
        return self.functional(model, config, inputs, path, training)

    def functional(self, model, config: dict, inputs: list, path: tuple[str, ...], training) -> list:
        input_refs = _history_list(config["input_layers"])
        if len(input_refs) != len(inputs):
            raise StageError("import", f"model '{model.name}' takes {len(input_refs)} inputs but is called on "
                                       f"{len(inputs)}")
        tensors = {ref: tensor for ref, tensor in zip(input_refs, inputs, strict=True)}
        pending = [(entry, index, node) for entry in config["layers"] if entry["class_name"] != "InputLayer"
                   for index, node in enumerate(entry.get("inbound_nodes", []))]
        while pending:
            waiting = []
            for entry, index, node in pending:
                try:
                    args = _resolve(node.get("args", []), tensors)
                    kwargs = _resolve(node.get("kwargs", {}), tensors)
                except KeyError:
                    waiting.append((entry, index, node))
                    continue
                outputs = self.call(model, entry, args, kwargs, path, training)
                for position, tensor in enumerate(outputs):
                    tensors[(entry_name(entry), index, position)] = tensor
            if len(waiting) == len(pending):
                names = ", ".join(entry_name(entry) for entry, _, _ in waiting)
                raise StageError("import", f"model '{model.name}': cannot order the calls of {names}")
            pending = waiting
        return [tensors[ref] for ref in _history_list(config["output_layers"])]

    def call(self, model, entry: dict, args: list, kwargs: dict, path: tuple[str, ...], training) -> list:
        """Call the tf_keras stand-in of one config entry; returns its outputs as a flat list."""
        name = entry_name(entry)
        kwargs = {key: value for key, value in kwargs.items() if key != "mask" and value is not None}
        if training is not None:
            kwargs["training"] = training  # a nested model called with training=False keeps that inside
        if is_op(entry):
            return [self.op(entry, args, path)]
        layer = model.get_layer(name)
        if entry["class_name"] in MODEL_CLASSES:
            return self.model(layer, _flat(args), (*path, name), kwargs.get("training"))
        key = id(layer)
        if key not in self.callables:
            self.callables[key] = self.twin(layer, entry, path)
        result = self.callables[key](*args, **kwargs)
        return _flat(result)

    def twin(self, layer, entry: dict, path: tuple[str, ...]) -> Callable:
        """A tf_keras callable for one Keras 3 layer: the translated layer, plus the activation layers its
        fused activation needs when tf_keras has no function of that name with the same meaning."""
        class_name, tf_layers = entry["class_name"], self.tf_keras.layers
        name = self.claim(entry_name(entry), path)
        where = f"layer '{entry_name(entry)}' ({class_name})"
        if class_name == "Lambda":
            return tf_layers.Lambda(layer.function, arguments=dict(layer.arguments or {}), name=name)
        config = translate_config(class_name, entry.get("config", {}), where, self.tf_keras)
        config["name"] = name
        if class_name == "Activation":
            return self.activation(config["activation"], name, where)
        trailing = None
        if config.get("activation") not in (None, *SAME_ACTIVATIONS):
            if class_name in ("LSTM", "GRU"):
                raise UsageError(f"{where} uses activation '{config['activation']}', which tf_keras's {class_name} "
                                 "cannot express; use tanh or sigmoid")
            trailing = self.activation(config["activation"], self.claim(f"{name}_{config['activation']}", ()), where)
            config["activation"] = "linear"
        if class_name in ("LSTM", "GRU") and config.get("recurrent_activation") not in (None, *SAME_ACTIVATIONS):
            raise UsageError(f"{where} uses recurrent_activation '{config['recurrent_activation']}', which means "
                             "a different function in tf_keras; use sigmoid")
        try:
            twin = getattr(tf_layers, class_name).from_config(config)
        except (TypeError, ValueError) as error:
            raise UsageError(f"{where} cannot be rebuilt in tf_keras: {error}") from error
        if layer.weights:
            self.weight_pairs.append((layer, twin, where))
        if trailing is None:
            return twin
        return lambda *args, **kwargs: trailing(twin(*args, **kwargs))

    def activation(self, activation: Any, name: str, where: str) -> Callable:
        """The activation as tf_keras layers; `name` (already claimed) goes to the last of them."""
        tf_layers = self.tf_keras.layers
        if activation in SAME_ACTIVATIONS:
            return tf_layers.Activation(activation, name=name)
        if activation not in COMPOSED_ACTIVATIONS:
            raise UsageError(f"{where} uses activation {activation!r}, which tf_keras lacks or defines differently; "
                             f"supported: {', '.join(sorted(SAME_ACTIVATIONS | COMPOSED_ACTIVATIONS))}")
        # Keras 3's hard_sigmoid: relu6(x + 3) / 6 == min(max(x / 6 + 0.5, 0), 1)
        gate_name = name if activation == "hard_sigmoid" else self.claim(f"{name}_gate", ())
        scale = tf_layers.Rescaling(1.0 / 6.0, offset=0.5, name=self.claim(f"{gate_name}_scale", ()))
        clip = tf_layers.ReLU(max_value=1.0, name=gate_name)
        if activation == "hard_sigmoid":
            return lambda x, **_: clip(scale(x))
        multiply = tf_layers.Multiply(name=name)  # hard_silu(x) = x * hard_sigmoid(x)
        return lambda x, **_: multiply([x, clip(scale(x))])

    def op(self, entry: dict, args: list, path: tuple[str, ...]):
        """`x + c`, `x * c`, `x / c` (c a number) as Rescaling; the same between two tensors as merge layers."""
        class_name, tf_layers = entry["class_name"], self.tf_keras.layers
        name = self.claim(entry_name(entry), path)
        if len(args) != 2:
            raise UsageError(f"op '{entry_name(entry)}' ({class_name}) has {len(args)} arguments; expected 2")
        left, right = args
        numbers = [isinstance(value, int | float) and not isinstance(value, bool) for value in args]
        if not any(numbers):
            merge = {"Add": tf_layers.Add, "Subtract": tf_layers.Subtract, "Multiply": tf_layers.Multiply}
            if class_name not in merge:
                raise UsageError(f"op '{entry_name(entry)}' divides two tensors, which the importer does not "
                                 "rebuild; express it with keras.layers and save the model again")
            return merge[class_name](name=name)([left, right])
        if all(numbers):
            raise UsageError(f"op '{entry_name(entry)}' ({class_name}) has no tensor argument")
        tensor, number = (right, float(left)) if numbers[0] else (left, float(right))
        scale, offset = {
            "Add": (1.0, number),
            "Subtract": (-1.0, number) if numbers[0] else (1.0, -number),
            "Multiply": (number, 0.0),
        }.get(class_name, (None, None))
        if class_name in ("Divide", "TrueDivide"):
            if numbers[0] or number == 0:
                raise UsageError(f"op '{entry_name(entry)}' divides by a tensor or by zero; the importer rebuilds "
                                 "only division of a tensor by a non-zero number")
            scale, offset = 1.0 / number, 0.0
        return tf_layers.Rescaling(scale, offset=offset, name=name)(tensor)

    def copy_weights(self) -> None:
        for original, twin, where in self.weight_pairs:
            weights = [np.asarray(value) for value in original.get_weights()]
            expected = [tuple(value.shape) for value in twin.get_weights()]
            received = [tuple(value.shape) for value in weights]
            if expected != received:
                raise StageError("import", f"{where}: Keras 3 weights have shapes {received}, the tf_keras layer "
                                           f"expects {expected}")
            twin.set_weights(weights)


def _history_list(refs) -> list[tuple[str, int, int]]:
    """input_layers/output_layers: one [name, node, tensor] triple, or a list of them."""
    if isinstance(refs, dict):
        refs = list(refs.values())
    if len(refs) == 3 and isinstance(refs[0], str):
        return [tuple(refs)]
    return [tuple(ref) for ref in refs]


def _resolve(value, tensors: dict):
    """Node arguments from a config, with each saved tensor reference replaced by the tf_keras tensor."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return tensors[tuple(value["config"]["keras_history"])]
        return {key: _resolve(item, tensors) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(item, tensors) for item in value]
    return value


def _flat(value) -> list:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [item for part in value for item in _flat(part)]
    return [value]


def _random_input(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    concrete = tuple(CHECK_BATCH if index == 0 else (size or FREE_DIMENSION) for index, size in enumerate(shape))
    if "int" in dtype:
        return rng.integers(0, 2, size=concrete).astype(dtype)
    return rng.standard_normal(concrete).astype(dtype)


def _flat_arrays(outputs) -> list[np.ndarray]:
    return [np.asarray(output, dtype=np.float64) for output in _flat(outputs)]
