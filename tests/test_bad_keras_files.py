"""Damaged .keras archives that once escaped as tracebacks or unnamed errors (issue 18's fuzzing, tests/test_fuzz.py):
each is now one `Error:` line naming the file, from `edgekit convert`. The mutants are rebuilt here in their
shapes, on models of a Dense layer or two."""

from __future__ import annotations

import json

import fuzz_formats  # benchmarks/ is on the tests' path
import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import main


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    """A tf_keras .keras archive (two Dense layers) and a Keras 3 one (one), 3 inputs and 2 outputs."""
    from edgekit._tf import keras as tf_keras

    folder = tmp_path_factory.mktemp("archives")
    import keras  # Keras 3, beside tf_keras once edgekit._tf has started TensorFlow

    inputs = tf_keras.Input((3,))  # Functional: its config names a tf_keras module, which Keras 3 cannot import
    hidden = tf_keras.layers.Dense(2, name="dense")(inputs)
    tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(hidden), name="net").save(folder / "tf.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")]).save(folder / "k3.keras")
    return {"tf_keras": (folder / "tf.keras").read_bytes(), "keras3": (folder / "k3.keras").read_bytes()}


def _convert(path) -> tuple[int, str]:
    done = CliRunner().invoke(main, ["convert", str(path), "--to", "tflite-float32", "--out",
                                     str(path.with_suffix(".float32.tflite"))], catch_exceptions=False)
    return done.exit_code, done.stderr.splitlines()[-1]


def _edited(archive: bytes, member: str, edit) -> bytes:
    members = fuzz_formats._members(archive)
    members[member] = edit(members[member])
    return fuzz_formats._repack(members)


def _config(edit):
    def change(content: bytes) -> bytes:
        config = json.loads(content)
        edit(config)
        return json.dumps(config).encode()
    return change


def _crc_damaged(archive: bytes) -> bytes:
    """config.json's bytes changed inside the zip, its CRC left as it was (the archive stores members as they are)."""
    at = archive.index(b'"class_name"')
    return archive[:at + 1] + b"C" + archive[at + 2:]


def _weights(tmp_path, kernel: np.ndarray) -> bytes:
    from edgekit._tf import keras as tf_keras

    model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2, name="dense")])
    model.set_weights([kernel.astype(np.float32), np.zeros(2, np.float32)])
    model.save(tmp_path / "weights.keras")
    return (tmp_path / "weights.keras").read_bytes()


CASES = {  # (archive, the damage, exit code, the error line after "Error: " with {path})
    "metadata.json null": ("tf_keras", lambda a, t: _edited(a, "metadata.json", lambda m: b"null"), 2,
                           "{path}: a damaged Keras model file (metadata.json holds NoneType, not a JSON object)"),
    "tf_keras config, Keras 3 metadata": (
        "tf_keras", lambda a, t: _edited(a, "metadata.json", lambda m: b'{"keras_version": "3.0.0"}'), 2,
        "{path}: model 'net' was saved by tf_keras (its config names module tf_keras.src.engine.functional), "
        "but its metadata.json says Keras 3: the file is damaged or was edited; save the model again"),
    "Keras 3 config.json with a bad CRC": ("keras3", lambda a, t: _crc_damaged(a), 2,
                                           "cannot read the model config in '{path}': Bad CRC-32 for file "
                                           "'config.json'"),
    "Keras 3 class_name a list": (
        "keras3", lambda a, t: _edited(a, "config.json", _config(lambda c: c["config"]["layers"][1].update(
            class_name=[]))), 2,
        "{path}: a damaged model config: layer 1 of the config's 'class_name' is list [], not a string; save the "
        "model again"),
    "Keras 3 layers a string": (
        "keras3", lambda a, t: _edited(a, "config.json", _config(lambda c: c["config"].update(layers="x"))), 2,
        "{path}: a damaged model config: the config's 'layers' is str 'x', not a list; save the model again"),
    "Keras 3 config a list": ("keras3", lambda a, t: _edited(a, "config.json", lambda c: b"[]"), 2,
                              "{path}: a damaged model config: the config is list [], not a JSON object; save the "
                              "model again"),
    "node index NaN (tf_keras retried the call forever)": (
        "tf_keras", lambda a, t: _edited(a, "config.json", _config(
            lambda c: c["config"]["layers"][2]["inbound_nodes"][0][0].__setitem__(1, float("nan")))), 2,
        "{path}: layer 'head' is called on node nan of layer 'dense', which the model never makes (a damaged or "
        "cyclic config); save the model again"),
    "a layer called on its own output": (
        "tf_keras", lambda a, t: _edited(a, "config.json", _config(
            lambda c: c["config"]["layers"][1]["inbound_nodes"][0][0].__setitem__(0, "dense"))), 2,
        "{path}: layer 'dense' is called on node 0 of layer 'dense', which the model never makes (a damaged or "
        "cyclic config); save the model again"),
    "NaN weights": ("tf_keras", lambda a, t: _weights(t, np.full((3, 2), np.nan)), 2,
                    "{path}: weight 'dense/kernel:0' holds 6 NaN or infinite values (of 6); the file is damaged, or "
                    "the training that saved it diverged: train or copy it again"),
    "weights that overflow": ("tf_keras", lambda a, t: _weights(t, np.full((3, 2), 3e38)), 1,
                              "verify failed: {path}: the Keras model's own output is NaN or infinite on 64 random "
                              "inputs; check its weights"),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_keras_archive_is_one_line_naming_it(case, archives, tmp_path):
    source, damage, code, message = CASES[case]
    path = tmp_path / "mutant.keras"
    path.write_bytes(damage(archives[source], tmp_path))
    assert _convert(path) == (code, "Error: " + message.format(path=path))


def test_shared_layers_and_nested_models_still_load(tmp_path):
    """The replay of tf_keras's rebuilding (model_files._refuse_unmade_nodes) accepts what tf_keras makes: a layer
    called twice, a nested model built on an Input (its node 0 is its own construction), in .keras and .h5."""
    from edgekit._tf import keras as tf_keras
    from edgekit.model_files import load_model

    inner_input = tf_keras.Input((3,))
    inner = tf_keras.Model(inner_input, tf_keras.layers.Dense(3, name="inner_dense")(inner_input), name="inner")
    shared = tf_keras.layers.Dense(3, name="shared")
    inputs = tf_keras.Input((3,))
    outputs = shared(inner(shared(inputs)))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(inner(outputs)), name="outer")
    sample = np.ones((1, 3), np.float32)
    for name in ("nested.keras", "nested.h5"):
        model.save(tmp_path / name)
        np.testing.assert_allclose(load_model(tmp_path / name)(sample), model(sample), rtol=1e-6)
