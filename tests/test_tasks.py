"""Builds beyond the default: an anomaly autoencoder on synthetic data, an MLP on an MNIST-shaped .npz and
.csv (issue 4), and what the pipeline refuses before training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import data
from edgekit.cli import main

# Whole builds or many trainings: outside the fast selection (pytest -m "not slow"), run by CI.
pytestmark = pytest.mark.slow

AUTOENCODER = """
name = "tiny-ad"
task = "anomaly"
metric = "auc"
dataset = "synthetic:640:2:300"
[model]
builder = "fc-autoencoder"
input = [640]
[model.args]
units = 32
bottleneck = 8
[train]
epochs = 6
learning_rate = 0.001
[optimize]
sparsity = 0.5
pruning_epochs = 1
qat_epochs = {qat}
max_drop = 5.0
"""

MLP = """
name = "tiny-mlp"
dataset = "builtin:mnist"
task = "classification"
metric = "accuracy"
[model]
builder = "mlp"
input = [28, 28, 1]
[model.args]
units = [32]
[train]
epochs = 3
learning_rate = 0.003
[optimize]
sparsity = 0.5
pruning_epochs = 1
qat_epochs = 1
max_drop = 10.0
"""


def _build(tmp_path, recipe_text, *extra):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe_text)
    return CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--out", str(tmp_path / "out"),
                                     "--runs", "10", "--warmup", "1", *extra])


def test_anomaly_autoencoder_reports_the_auc_of_the_reconstruction_error(tmp_path):
    result = _build(tmp_path, AUTOENCODER.format(qat=0), "--target", "nucleo-l4r5zi")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "tiny-ad-nucleo-l4r5zi" / "report.json").read_text())
    assert report["task"] == "anomaly" and report["metric"] == "auc"
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["int8"]["metric"]["name"] == "auc" and variants["int8"]["accuracy"] is None
    assert 0.5 < variants["int8"]["metric"]["value"] <= 1.0
    assert variants["float32"]["metric"]["value"] - variants["int8"]["metric"]["value"] <= 0.05
    assert report["selected"] == "int8"
    assert not (tmp_path / "out" / "tiny-ad-nucleo-l4r5zi" / "labels.txt").exists()
    # a microcontroller's firmware files
    bundle = tmp_path / "out" / "tiny-ad-nucleo-l4r5zi" / "bundle" / "nucleo-l4r5zi"
    written = {f.name for f in bundle.iterdir()}
    assert {"model_data.cc", "model_ops.h", "model_arena.h", "main.cc", "test_data.cc"} <= written


def test_qat_after_dense_batch_norm_is_refused_before_training(tmp_path):
    result = _build(tmp_path, AUTOENCODER.format(qat=1), "--target", "nucleo-l4r5zi")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: recipe 'tiny-ad': layer 'encoder1_bn' normalizes a Dense layer's output, which int8 "
        "quantization-aware training converts wrongly; set optimize.qat_epochs = 0 to use post-training "
        "quantization")
    assert "[train]" not in result.stderr


@pytest.fixture(scope="module")
def mnist_shaped(tmp_path_factory):
    """scikit-learn's digits scaled up to 28x28 uint8, saved the way MNIST is (the real file needs a
    download this machine cannot make; the reading code is the same)."""
    from scipy.ndimage import zoom

    digits = data.load("digits")
    def to_mnist(x):
        return np.clip(zoom(x[..., 0], (1, 3.5, 3.5), order=1) * 255, 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("mnist")
    x_train = to_mnist(np.concatenate([digits.x_train, digits.x_val]))
    y_train = np.concatenate([digits.y_train, digits.y_val])
    x_test, y_test = to_mnist(digits.x_test), digits.y_test
    np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    rows = ["label," + ",".join(f"pixel{i}" for i in range(784))]
    rows += [f"{label}," + ",".join(map(str, image.ravel())) for label, image in
             zip(np.concatenate([y_train, y_test]), np.concatenate([x_train, x_test]), strict=True)]
    (folder / "mnist.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("name", ["mnist.npz", "mnist.csv"])
def test_mlp_builds_from_an_mnist_file(tmp_path, mnist_shaped, name):
    result = _build(tmp_path, MLP, "--target", "rpi4", "--data", str(mnist_shaped / name))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "tiny-mlp-rpi4" / "report.json").read_text())
    assert report["dataset"]["input_shape"] == [28, 28, 1]
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["accuracy"] > 0.8


def test_a_recipe_without_data_asks_for_it(tmp_path):
    result = _build(tmp_path, MLP.replace('dataset = "builtin:mnist"\n', ""), "--target", "rpi4")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: recipe 'tiny-mlp' names no dataset; pass one with --data")


def test_binary_classification_reports_accuracy_and_auc(tmp_path):
    binary = MLP.replace('name = "tiny-mlp"', 'name = "tiny-binary"').replace(
        'task = "classification"\nmetric = "accuracy"', 'task = "binary"\nmetric = "auc"').replace(
        "input = [28, 28, 1]\n", "")
    result = _build(tmp_path, binary, "--target", "rpi4", "--data", "synthetic:8x8x1:2:200")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "tiny-binary-rpi4" / "report.json").read_text())
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["metric"]["name"] == "auc" and set(int8["metric"]["all"]) == {"accuracy", "auc"}
    assert 0.5 <= int8["metric"]["all"]["accuracy"] <= 1 and 0.5 <= int8["metric"]["all"]["auc"] <= 1
    assert int8["accuracy"] is None  # the recipe's metric is AUC; accuracy is in metric.all
