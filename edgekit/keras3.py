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

import inspect
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import StageError, UsageError

log = logging.getLogger("edgekit")

TOLERANCE = 1e-5  # largest |difference| allowed, relative to the output's scale when that is above 1
CHECK_BATCH = 4  # seeded random samples run through both models
FREE_DIMENSION = 32  # size given to a dimension the model leaves open (a variable sequence length)

SUPPORTED_LAYERS = frozenset({
    "InputLayer",
    "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "Conv1DTranspose", "Conv2DTranspose", "Dense",
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Reshape", "Flatten", "Permute", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D",
    "Rescaling", "Normalization", "LSTM", "GRU",
})
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
# Arithmetic written with operators on Keras 3 tensors (`x * 2.0`) is saved as an op, not a layer.
SUPPORTED_OPS = frozenset({"Add", "Subtract", "Multiply", "Divide", "TrueDivide"})

# Activation names that mean the same function in Keras 3 and tf_keras (checked numerically).
SAME_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softmax", "log_softmax",
    "softplus", "softsign", "swish", "silu", "gelu", "exponential", "mish",
})
# Keras 3 defines hard_sigmoid as relu6(x + 3) / 6, tf_keras as clip(0.2x + 0.5): rebuilt from layers.
COMPOSED_ACTIVATIONS = frozenset({"hard_sigmoid", "hard_silu", "hard_swish"})

# Config keys Keras 3 writes that tf_keras layers lack, with the values that make them no-ops.
_NO_OP_VALUES: dict[str, tuple] = {
    "data_format": ("channels_last",),
    "zero_output_for_mask": (False,),
    "rms_scaling": (False,),
    "use_cudnn": ("auto", True, False),  # a kernel choice, not a different function
    "quantization_config": (None,),
    "lora_rank": (None,),
    "lora_alpha": (None,),
    "optional": (False,),
}
_RENAMED_KEYS = {"LeakyReLU": {"negative_slope": "alpha"}}
_BASE_LAYER_KEYS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights",
                    "activity_regularizer", "autocast"}

_UNSAFE_HINT = "pass --unsafe-load (unsafe=True from Python) if you trust the file's source"


def is_keras3_file(path: str | Path) -> bool:
    """True for a `.keras` zip or an `.h5` file whose metadata says Keras 3 saved it."""
    version = _saved_keras_version(Path(path))
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
    check_config(read_config(path), unsafe=unsafe)
    original = _load_with_keras3(path, unsafe)
    rebuilt = rebuild(original)
    difference = max_output_difference(original, rebuilt)
    log.info("imported Keras 3 model '%s': %d layers, outputs within %.2g of the original",
             original.name, len(rebuilt.layers), difference)
    return rebuilt


def read_config(path: str | Path) -> dict:
    """The model config a Keras 3 file holds ({'class_name', 'config', ...}), read without Keras."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            return json.loads(_text(f.attrs["model_config"]))
    except (KeyError, OSError, ValueError) as error:
        raise UsageError(f"cannot read the model config in '{path}': {error}") from error


def check_config(config: dict, unsafe: bool = False) -> None:
    """Refuse, before anything is loaded, what the importer cannot rebuild: one line naming the layer."""
    class_name = config.get("class_name")
    name = config.get("config", {}).get("name", "?")
    if class_name not in MODEL_CLASSES or not _is_builtin(config):
        raise UsageError(
            f"model '{name}' is a subclassed Keras 3 model (class {class_name}): its call() is Python code that "
            "the file does not hold, so it cannot be rebuilt; rebuild it with keras.Sequential or the "
            "Functional API (keras.Model(inputs, outputs)), copy its weights and save it again")
    for entry, owner in _walk_layers(config):
        _check_layer(entry, owner, unsafe)


def rebuild(original):
    """A flat tf_keras Functional model computing what the loaded Keras 3 `original` computes."""
    from edgekit._tf import keras as tf_keras

    if not original.inputs:
        raise UsageError(f"model '{original.name}' has no input shape (it was never built); build it, for "
                         "example with a keras.Input layer first, and save it again")
    builder = _Rebuilder(tf_keras, _names_in(original.get_config()))
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


# --- reading files -------------------------------------------------------------------------------------


def _saved_keras_version(path: Path) -> str | None:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                return str(json.loads(archive.read("metadata.json")).get("keras_version", "")) or None
        if path.is_file():
            import h5py

            if not h5py.is_hdf5(path):
                return None
            with h5py.File(path, "r") as f:
                return _text(f.attrs["keras_version"]) if "keras_version" in f.attrs else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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


# --- checking configs ----------------------------------------------------------------------------------


def _is_builtin(entry: dict) -> bool:
    """A class that ships with Keras. Keras 3 writes module None and a registered_name for a user's class;
    legacy .h5 configs write neither a module nor a registered_name."""
    module, registered = entry.get("module"), entry.get("registered_name")
    if module is None:
        return registered is None
    keras_module = module == "keras" or module.startswith("keras.")
    return keras_module and registered in (None, entry.get("class_name"))


def _is_op(entry: dict) -> bool:
    return str(entry.get("module") or "").startswith("keras.src.ops")


def _entry_name(entry: dict) -> str:
    return entry.get("name") or entry.get("config", {}).get("name", "?")


def _walk_layers(config: dict, owner: str | None = None) -> Iterator[tuple[dict, str]]:
    """Every layer entry in a model config, nested models included, with the name of the model holding it."""
    model_name = config.get("config", {}).get("name", "?")
    for entry in config.get("config", {}).get("layers", []):
        yield entry, owner or model_name
        if entry.get("class_name") in MODEL_CLASSES and _is_builtin(entry):
            yield from _walk_layers(entry, _entry_name(entry))


def _check_layer(entry: dict, owner: str, unsafe: bool) -> None:
    class_name, name, module = entry.get("class_name"), _entry_name(entry), entry.get("module")
    where = f"layer '{name}' ({class_name}) in model '{owner}'"
    if class_name == "Lambda" and _is_builtin(entry):
        if not unsafe:
            raise UsageError(f"{where} is a Lambda layer, whose Python code Keras's safe mode does not load; "
                             f"{_UNSAFE_HINT}")
        return
    if class_name in MODEL_CLASSES and _is_builtin(entry):
        return
    if not _is_builtin(entry):
        origin = f" from {module}" if module else ""
        raise UsageError(f"{where} is a custom layer{origin}, which the Keras 3 importer cannot rebuild; replace "
                         "it with built-in layers, or save the model from tf_keras")
    if _is_op(entry):
        if class_name not in SUPPORTED_OPS:
            raise UsageError(f"{where} is a Keras 3 op the importer does not rebuild "
                             f"(it rebuilds {', '.join(sorted(SUPPORTED_OPS))} of tensors and constants); "
                             "express it with keras.layers and save the model again")
        return
    if class_name not in SUPPORTED_LAYERS:
        raise UsageError(f"{where} is not among the layers the Keras 3 importer rebuilds "
                         "(convolutions, dense, batch norm, activations, pooling, merging, reshaping, dropout, "
                         "padding, rescaling, normalization, LSTM and GRU); replace it, or save the model from "
                         "tf_keras")
    dtype = entry.get("config", {}).get("dtype")
    if isinstance(dtype, dict) and "Quantized" in str(dtype.get("class_name")):
        raise UsageError(f"{where} is quantized by Keras 3 ({dtype.get('class_name')}); import the float model "
                         "and let edgekit quantize it")


# --- rebuilding ----------------------------------------------------------------------------------------


def _names_in(config: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry, _owner in _walk_layers({"config": config}):
        name = _entry_name(entry)
        counts[name] = counts.get(name, 0) + 1
    return counts


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
                    tensors[(_entry_name(entry), index, position)] = tensor
            if len(waiting) == len(pending):
                names = ", ".join(_entry_name(entry) for entry, _, _ in waiting)
                raise StageError("import", f"model '{model.name}': cannot order the calls of {names}")
            pending = waiting
        return [tensors[ref] for ref in _history_list(config["output_layers"])]

    def call(self, model, entry: dict, args: list, kwargs: dict, path: tuple[str, ...], training) -> list:
        """Call the tf_keras stand-in of one config entry; returns its outputs as a flat list."""
        name = _entry_name(entry)
        kwargs = {key: value for key, value in kwargs.items() if key != "mask" and value is not None}
        if training is not None:
            kwargs["training"] = training  # a nested model called with training=False keeps that inside
        if _is_op(entry):
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
        name = self.claim(_entry_name(entry), path)
        where = f"layer '{_entry_name(entry)}' ({class_name})"
        if class_name == "Lambda":
            return tf_layers.Lambda(layer.function, arguments=dict(layer.arguments or {}), name=name)
        config = _translate_config(class_name, entry.get("config", {}), where, self.tf_keras)
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
        name = self.claim(_entry_name(entry), path)
        if len(args) != 2:
            raise UsageError(f"op '{_entry_name(entry)}' ({class_name}) has {len(args)} arguments; expected 2")
        left, right = args
        numbers = [isinstance(value, int | float) and not isinstance(value, bool) for value in args]
        if not any(numbers):
            merge = {"Add": tf_layers.Add, "Subtract": tf_layers.Subtract, "Multiply": tf_layers.Multiply}
            if class_name not in merge:
                raise UsageError(f"op '{_entry_name(entry)}' divides two tensors, which the importer does not "
                                 "rebuild; express it with keras.layers and save the model again")
            return merge[class_name](name=name)([left, right])
        if all(numbers):
            raise UsageError(f"op '{_entry_name(entry)}' ({class_name}) has no tensor argument")
        tensor, number = (right, float(left)) if numbers[0] else (left, float(right))
        scale, offset = {
            "Add": (1.0, number),
            "Subtract": (-1.0, number) if numbers[0] else (1.0, -number),
            "Multiply": (number, 0.0),
        }.get(class_name, (None, None))
        if class_name in ("Divide", "TrueDivide"):
            if numbers[0] or number == 0:
                raise UsageError(f"op '{_entry_name(entry)}' divides by a tensor or by zero; the importer rebuilds "
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


def _translate_config(class_name: str, config: dict, where: str, tf_keras) -> dict:
    """A Keras 3 layer config in tf_keras's vocabulary; refuses a setting tf_keras cannot express."""
    accepted = _init_keys(getattr(tf_keras.layers, class_name))
    renamed = _RENAMED_KEYS.get(class_name, {})
    result = {}
    for key, value in config.items():
        key = renamed.get(key, key)
        if key == "dtype":
            value = _dtype_name(value)
        elif key.endswith("_initializer"):
            value = _translate_object(value, tf_keras.initializers, where, key, required=False)
        elif key.endswith("_regularizer") or key.endswith("_constraint"):
            module = tf_keras.regularizers if key.endswith("_regularizer") else tf_keras.constraints
            value = _translate_object(value, module, where, key, required=True)
        elif key in ("activation", "recurrent_activation") and isinstance(value, dict):
            raise UsageError(f"{where} uses a custom {key} ({value.get('config') or value.get('class_name')}); "
                             "use a built-in activation name")
        if key not in accepted:
            if value in _NO_OP_VALUES.get(key, ()) or value is None:
                continue
            raise UsageError(f"{where} sets {key}={value!r}, which tf_keras's {class_name} cannot express; "
                             "save the model without it")
        result[key] = value
    return result


def _init_keys(cls) -> set[str]:
    keys = set(_BASE_LAYER_KEYS)
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            keys |= set(inspect.signature(klass.__init__).parameters)
    return keys - {"self", "args", "kwargs"}


def _dtype_name(value) -> str | None:
    if isinstance(value, dict):  # {'class_name': 'DTypePolicy', 'config': {'name': 'float32'}}
        return value.get("config", {}).get("name")
    return value


def _translate_object(value, module, where: str, key: str, required: bool):
    """An initializer, regularizer or constraint config as tf_keras deserializes it. Initializers only
    shape fresh weights, and every weight is copied, so one tf_keras lacks is dropped; a regularizer or
    constraint changes training, so one tf_keras lacks is refused."""
    if value is None or isinstance(value, str):
        return value
    class_name = value.get("class_name")
    target = getattr(module, str(class_name), None)
    if target is None or not inspect.isclass(target):
        if required:
            raise UsageError(f"{where} uses {key} {class_name}, which tf_keras lacks; remove it before saving")
        return None
    settings = value.get("config") or {}
    accepted = set(inspect.signature(target.__init__).parameters)
    dropped = {name: setting for name, setting in settings.items() if name not in accepted}
    if required and any(setting is not None for setting in dropped.values()):
        raise UsageError(f"{where} sets {key} {class_name} options {dropped} that tf_keras lacks")
    return {"class_name": class_name, "config": {k: v for k, v in settings.items() if k in accepted}}


def _random_input(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    concrete = tuple(CHECK_BATCH if index == 0 else (size or FREE_DIMENSION) for index, size in enumerate(shape))
    if "int" in dtype:
        return rng.integers(0, 2, size=concrete).astype(dtype)
    return rng.standard_normal(concrete).astype(dtype)


def _flat_arrays(outputs) -> list[np.ndarray]:
    return [np.asarray(output, dtype=np.float64) for output in _flat(outputs)]
