"""Loading a model file: a tf_keras `.keras` or `.h5` file, or a SavedModel folder, in Keras's safe mode.

The file is looked at before tf_keras reads it, so that each way it can be wrong is one UsageError line: a
missing path, a file that is no model, a model saved by Keras 3 (whose config tf_keras cannot read), and
a Lambda layer, whose stored Python code safe mode refuses (tf_keras checks that only in `.keras` files;
here every format is checked).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.errors import UsageError

KERAS_FILES = ".keras or .h5 file, or a SavedModel folder"
KERAS3 = "saved by Keras 3, but its metadata could not be read to import it"


def load_model(path: str | Path, unsafe: bool = False):
    """The tf_keras model stored at `path`, uncompiled. `unsafe` lets Lambda layers load (their Python
    code runs): only for files from a trusted source."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"model '{path}' does not exist")
    from edgekit import keras3

    if path.is_file() and keras3.is_keras3_file(path):
        return _finite(path, keras3.import_keras3(path, unsafe=unsafe))  # rebuilt in tf_keras, outputs checked
    if path.is_dir():
        config = _saved_model_config(path)
    elif path.suffix.lower() == ".keras":
        config = _keras_archive_config(path)
    elif path.suffix.lower() in (".h5", ".hdf5"):
        config = _hdf5_config(path)
    elif path.suffix.lower() in (".tflite", ".onnx"):
        raise UsageError(f"{path} is a converted model; a model to convert is a {KERAS_FILES}")
    else:
        raise UsageError(f"{path}: unsupported model file '{path.suffix or path.name}'; a model is a {KERAS_FILES}")
    if not unsafe:
        _refuse_lambda(path, config)
    if not path.is_dir():  # a .keras or .h5 config is one JSON document
        _refuse_unmade_nodes(path, config)
    return _finite(path, _load(path, unsafe))


def _finite(path: Path, model):
    """`model`, unless a weight is NaN or infinite: nothing made from it could be verified (its outputs are no
    numbers), so the file is refused here, by name, rather than a conversion failing later on NaN."""
    import numpy as np

    for weight in model.weights:
        values = np.asarray(weight)
        bad = values.size - int(np.count_nonzero(np.isfinite(values))) if values.dtype.kind == "f" else 0
        if bad:
            raise UsageError(f"{path}: weight '{weight.name}' holds {bad:,} NaN or infinite values (of "
                             f"{values.size:,}); the file is damaged, or the training that saved it diverged: train "
                             "or copy it again")
    return model


def _load(path: Path, unsafe: bool):
    from edgekit._files import captured_stderr_fd
    from edgekit._tf import keras

    native_log: list[str] = []
    try:
        with captured_stderr_fd() as native_log:
            model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:  # Keras raises many kinds; the first line names the layer or the problem
        lines = [line.strip() for line in (str(e) or type(e).__name__).splitlines() if line.strip()]
        errors = [line for line in native_log if "error" in line.lower()]
        reason = (lines or errors or [type(e).__name__])[0][:300]
        raise UsageError(f"{path}: tf_keras cannot load it: {reason}") from e
    if not isinstance(model, keras.Model):
        raise UsageError(f"{path}: a SavedModel without a Keras model in it; save the model with tf_keras's "
                         "model.save")
    return model


def _keras_archive_config(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a Keras model file (a .keras file is a zip archive; this is not one)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise UsageError(f"{path}: a zip archive without config.json, so not a Keras model file")
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            config = archive.read("config.json").decode()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UsageError(f"{path}: a damaged Keras model file ({e})") from e
    if not isinstance(metadata, dict):
        raise UsageError(f"{path}: a damaged Keras model file (metadata.json holds {type(metadata).__name__}, not a "
                         "JSON object)")
    if str(metadata.get("keras_version", "")).startswith("3"):
        raise UsageError(f"{path}: {KERAS3}")
    return config


def _hdf5_config(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version, config = _text(f.attrs.get("keras_version", "")), f.attrs.get("model_config")
    except OSError as e:
        raise UsageError(f"{path}: not a Keras model file (not an HDF5 file)") from e
    if version.startswith("3"):
        raise UsageError(f"{path}: {KERAS3}")
    if config is None:
        raise UsageError(f"{path}: an HDF5 file without a model config (only weights?); save the whole model "
                         "with model.save")
    return _text(config)


def _saved_model_config(path: Path) -> str:
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise UsageError(f"{path}: a folder without saved_model.pb, so not a SavedModel; a model is a "
                         f"{KERAS_FILES}")
    metadata = path / "keras_metadata.pb"
    if not metadata.is_file():
        raise UsageError(f"{path}: a SavedModel without Keras metadata (written by tf.saved_model.save or "
                         "Keras 3's model.export); save the model with tf_keras's model.save")
    # A protobuf of JSON layer records; what is looked for (a layer's class name) is plain text in it.
    return metadata.read_bytes().decode(errors="replace")


def _refuse_lambda(path: Path, config: str) -> None:
    try:
        names = [name for name, class_name in _layers(json.loads(config)) if class_name == "Lambda"]
    except ValueError:  # SavedModel metadata is not one JSON document
        names = ["lambda"] if re.search(r'"class_name":\s*"Lambda"', config) else []
    if names:
        raise UsageError(f"{path}: layer '{names[0]}' is a Lambda layer, whose stored Python code Keras's safe "
                         "mode does not run; rebuild the model with built-in layers in place of the Lambda")


def _refuse_unmade_nodes(path: Path, config: str) -> None:
    """tf_keras rebuilds a Functional model by calling each layer on its inbound nodes, putting back any call
    whose inputs do not exist yet and retrying until none is left: a reference to a node the model never makes
    (a damaged node index, a cycle) retries forever. The same rebuilding is played here on names alone."""
    try:
        document = json.loads(config)
    except ValueError:
        return  # tf_keras says what is wrong with it
    for model in _functional_configs(document):
        layers = [entry for entry in model["layers"] if isinstance(entry, dict)]
        classes = {str(entry.get("name")): entry.get("class_name") for entry in layers}
        pending = {str(entry.get("name")): list(entry.get("inbound_nodes") or []) for entry in layers}
        made = dict.fromkeys(pending, 0)
        progress = True
        while progress:
            progress = False
            for name, nodes in pending.items():
                while nodes and all(_made(reference, classes, made) for reference in _references(nodes[0])):
                    nodes.pop(0)
                    made[name] += 1
                    progress = True
        for name, nodes in pending.items():
            if nodes:
                missing = next(r for r in _references(nodes[0]) if not _made(r, classes, made))
                raise UsageError(f"{path}: layer '{name}' is called on node {missing[1]!r} of layer '{missing[0]}', "
                                 "which the model never makes (a damaged or cyclic config); save the model again")


def _made(reference: list, classes: dict, made: dict[str, int]) -> bool:
    """Whether the node a reference names exists yet. An InputLayer has its one node from the start (tf_keras
    reads any index of it as 0); a nested model built on an Input counts its construction as node 0, so
    either numbering is taken for a model."""
    name, index = reference[0], reference[1]
    if classes.get(name) == "InputLayer":
        return True
    last = made.get(name, 0) - (classes.get(name) not in _MODEL_CLASSES)
    return name in made and isinstance(index, int) and 0 <= index <= last


_MODEL_CLASSES = ("Functional", "Model", "Sequential")


def _functional_configs(config) -> Iterator[dict]:
    """The config of every model, nested ones included, whose layers name their inbound nodes."""
    if isinstance(config, dict):
        inner = config.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list) and any(
                isinstance(entry, dict) and "inbound_nodes" in entry for entry in inner["layers"]):
            yield inner
        for value in config.values():
            yield from _functional_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from _functional_configs(value)


def _references(node) -> Iterator[list]:
    """[layer name, node index, tensor index, ...] entries in a node's data (keyword arguments included)."""
    if isinstance(node, list) and len(node) in (3, 4) and isinstance(node[0], str):
        if node[0] != "_CONSTANT_VALUE":  # a constant argument, not a layer's output
            yield node
        if len(node) == 4:
            yield from _references(list(node[3].values()) if isinstance(node[3], dict) else node[3])
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)
    elif isinstance(node, dict):
        yield from _references(list(node.values()))


def _layers(config) -> Iterator[tuple[str, str]]:
    """(name, class name) of every layer in a model config, nested models included."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield str(config["config"].get("name", "")), str(config["class_name"])
        for value in config.values():
            yield from _layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layers(value)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def keras_bytes(model) -> bytes:
    """The model as a .keras file (weights and architecture: an uncompiled copy leaves the optimizer state
    behind) whose bytes depend only on the model. tf_keras stamps the save time into metadata.json and into
    one zip entry, which alone would make two identical trainings give different files."""
    import tempfile

    from edgekit.optimize import clone

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        clone(model).save(path)
        return _without_timestamps(path.read_bytes())


def _without_timestamps(archive: bytes) -> bytes:
    import io

    result = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(result, "w") as copy:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":  # tf_keras writes it and never reads it back
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata).encode()
            copy.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), content,
                          compress_type=info.compress_type)
    return result.getvalue()


def load_own_keras(path: Path) -> Any:
    """A .keras file this process wrote itself (keras_bytes), loaded uncompiled without load_model's checks:
    safe mode still refuses Lambda code."""
    from edgekit._tf import keras

    return keras.models.load_model(path, compile=False)
