"""`edgekit optimize` on a model from outside a build: prune + QAT, the report beside the file, the guard."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import main
from edgekit.model_info import inspect_model

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edgekit import data
    from edgekit._tf import keras

    keras.utils.set_random_seed(0)
    digits = data.load("digits")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
                              keras.layers.Conv2D(16, 3, activation="relu", name="conv2"), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu", name="dense1"),
                              keras.layers.Dense(10, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=8, verbose=0)
    path = tmp_path_factory.mktemp("optimize") / "cnn.keras"
    model.save(path)
    return path


def _optimize(model, out, *args):
    return CliRunner().invoke(main, ["optimize", str(model), "--data", "digits", "--out", str(out),
                                     "--pruning-epochs", "1", "--qat-epochs", "1", *args])


def test_prune_and_qat_a_model_from_outside(trained, tmp_path):
    out = tmp_path / "cnn.int8.tflite"
    result = _optimize(trained, out, "--max-drop", "5")
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["kept_dense"] == ["conv1", "out"] and report["pruned_layers"] == ["conv2", "dense1"]
    by_layer = {row["layer"]: row["sparsity"] for row in report["artifact_sparsity"]}
    assert by_layer["conv2"] == pytest.approx(0.5, abs=0.01) and by_layer["dense1"] == pytest.approx(0.5, abs=0.01)
    assert by_layer["conv1"] < 0.05
    assert report["after"]["size_bytes"] == out.stat().st_size < report["before"]["size_bytes"]
    assert report["after"]["gzip_bytes"] < report["after"]["size_bytes"]
    assert "int8" in inspect_model(out).weight_dtypes
    assert [step["step"] for step in report["steps"]] == ["prune", "qat"]
    assert "accuracy: " in result.stdout and "conv2: 50.0% zeros" in result.stdout
    assert "kept dense: out (the last Dense layer (the outputs))\n" in result.stdout
    assert "\nprune: val accuracy " in result.stdout


def test_a_large_drop_exits_3_and_writes_nothing(trained, tmp_path):
    out = tmp_path / "bad.tflite"
    result = _optimize(trained, out, "--sparsity", "0.95", "--quantize", "ptq", "--max-drop", "0")
    assert result.exit_code == 3, result.output
    assert "points behind float" in result.stderr and "try lower sparsity" in result.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_bad_sparsity_is_one_line(trained, tmp_path):
    result = _optimize(trained, tmp_path / "x.tflite", "--sparsity", "half")
    assert result.exit_code == 2
    assert result.stderr == "Error: --sparsity 'half': expected a number from 0 to 0.95, or 2:4\n"


def test_the_same_seed_gives_the_same_bytes(trained, tmp_path):
    """Pruning, QAT and the calibration samples are seeded: run twice, `edgekit optimize` writes the same file;
    another seed trains and samples differently."""
    files = {}
    for name, seed in (("first", "3"), ("again", "3"), ("other", "4")):
        files[name] = tmp_path / f"{name}.tflite"
        result = _optimize(trained, files[name], "--max-drop", "100", "--seed", seed)
        assert result.exit_code == 0, result.output
    assert files["first"].read_bytes() == files["again"].read_bytes()
    assert files["first"].read_bytes() != files["other"].read_bytes()
    assert json.loads(files["first"].with_suffix(".json").read_text())["seed"] == 3
