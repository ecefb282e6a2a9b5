"""The half of the Keras 3 importer that needs no Keras: what a Keras 3 file's config says, what the importer
refuses before anything is loaded (one line naming the layer), and a layer config translated to tf_keras's
vocabulary. edgekit.keras3 loads the model and rebuilds it from these."""

from __future__ import annotations

import inspect
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from edgekit.errors import UsageError

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


def saved_keras_version(path: Path) -> str | None:
    """The keras_version a .keras zip or .h5 file's metadata records; None for any other file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                metadata = json.loads(archive.read("metadata.json"))
                return str(metadata.get("keras_version", "")) or None if isinstance(metadata, dict) else None
        if path.is_file():
            import h5py

            if not h5py.is_hdf5(path):
                return None
            with h5py.File(path, "r") as f:
                return _text(f.attrs["keras_version"]) if "keras_version" in f.attrs else None
    except (OSError, ValueError, zipfile.BadZipFile):  # model_files.load_model says what is wrong with it
        return None
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_config(path: str | Path) -> dict:
    """The model config a Keras 3 file holds ({'class_name', 'config', ...}), read without Keras."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as f:
                config = json.loads(_text(f.attrs["model_config"]))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise UsageError(f"cannot read the model config in '{path}': {error}") from error
    _check_shape(config, path)
    return config


def _check_shape(config, path: Path) -> None:
    """The skeleton every reader of a model config walks: objects where objects belong, a list of layers, and
    names that are strings. A damaged config is one line here, not an exception deep in a reader."""
    def refuse(where: str, value, expected: str) -> UsageError:
        return UsageError(f"{path}: a damaged model config: {where} is {type(value).__name__} {value!r:.60}, "
                          f"not {expected}; save the model again")

    def entry(value, where: str) -> dict:
        if not isinstance(value, dict):
            raise refuse(where, value, "a JSON object")
        inner = value.get("config", {})
        if not isinstance(inner, dict):
            raise refuse(f"{where}'s 'config'", inner, "a JSON object")
        for owner, key in ((value, "class_name"), (value, "module"), (value, "registered_name"), (value, "name"),
                           (inner, "name")):
            if owner.get(key) is not None and not isinstance(owner[key], str):
                raise refuse(f"{where}'s '{key}'", owner[key], "a string")
        return inner

    def model(value, where: str) -> None:
        layers = entry(value, where).get("layers", [])
        if not isinstance(layers, list):
            raise refuse(f"{where}'s 'layers'", layers, "a list")
        for number, layer in enumerate(layers):
            entry(layer, f"layer {number} of {where}")
            if layer.get("class_name") in MODEL_CLASSES:
                model(layer, f"layer {number} of {where}")

    model(config, "the config")


def check_config(config: dict, unsafe: bool = False) -> None:
    """Refuse, before anything is loaded, what the importer cannot rebuild: one line naming the layer."""
    class_name = config.get("class_name")
    name = config.get("config", {}).get("name", "?")
    if str(config.get("module")).startswith("tf_keras"):  # metadata.json says 3.x, the config says otherwise
        raise UsageError(f"model '{name}' was saved by tf_keras (its config names module {config['module']}), but "
                         "its metadata.json says Keras 3: the file is damaged or was edited; save the model again")
    if class_name not in MODEL_CLASSES or not is_builtin(config):
        raise UsageError(
            f"model '{name}' is a subclassed Keras 3 model (class {class_name}): its call() is Python code that "
            "the file does not hold, so it cannot be rebuilt; rebuild it with keras.Sequential or the "
            "Functional API (keras.Model(inputs, outputs)), copy its weights and save it again")
    for entry, owner in walk_layers(config):
        _check_layer(entry, owner, unsafe)


def is_builtin(entry: dict) -> bool:
    """A class that ships with Keras. Keras 3 writes module None and a registered_name for a user's class;
    legacy .h5 configs write neither a module nor a registered_name."""
    module, registered = entry.get("module"), entry.get("registered_name")
    if module is None:
        return registered is None
    keras_module = module == "keras" or module.startswith("keras.")
    return keras_module and registered in (None, entry.get("class_name"))


def is_op(entry: dict) -> bool:
    """An op entry: arithmetic on Keras 3 tensors, saved from keras.src.ops rather than as a layer."""
    return str(entry.get("module") or "").startswith("keras.src.ops")


def entry_name(entry: dict) -> str:
    """A config entry's layer name."""
    return entry.get("name") or entry.get("config", {}).get("name", "?")


def walk_layers(config: dict, owner: str | None = None) -> Iterator[tuple[dict, str]]:
    """Every layer entry in a model config, nested models included, with the name of the model holding it."""
    model_name = config.get("config", {}).get("name", "?")
    for entry in config.get("config", {}).get("layers", []):
        yield entry, owner or model_name
        if entry.get("class_name") in MODEL_CLASSES and is_builtin(entry):
            yield from walk_layers(entry, entry_name(entry))


def _check_layer(entry: dict, owner: str, unsafe: bool) -> None:
    class_name, name, module = entry.get("class_name"), entry_name(entry), entry.get("module")
    where = f"layer '{name}' ({class_name}) in model '{owner}'"
    if class_name == "Lambda" and is_builtin(entry):
        if not unsafe:
            raise UsageError(f"{where} is a Lambda layer, whose Python code Keras's safe mode does not load; "
                             f"{_UNSAFE_HINT}")
        return
    if class_name in MODEL_CLASSES and is_builtin(entry):
        return
    if not is_builtin(entry):
        origin = f" from {module}" if module else ""
        raise UsageError(f"{where} is a custom layer{origin}, which the Keras 3 importer cannot rebuild; replace "
                         "it with built-in layers, or save the model from tf_keras")
    if is_op(entry):
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


def names_in(config: dict) -> dict[str, int]:
    """How often each layer name occurs in a model config, nested models included."""
    counts: dict[str, int] = {}
    for entry, _owner in walk_layers({"config": config}):
        name = entry_name(entry)
        counts[name] = counts.get(name, 0) + 1
    return counts


def translate_config(class_name: str, config: dict, where: str, tf_keras) -> dict:
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
