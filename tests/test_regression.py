"""Regression end to end: float targets read from every source that can hold them (.npz, .csv target column,
synthetic), kept in the data's own units and split without stratification; the sources that hold classes
refused; and a tiny MLP built through the CLI and scored by MAE, float against int8."""

from __future__ import annotations

import json

import datagen
import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import data
from edgekit.cli import main
from edgekit.errors import UsageError

REGRESSION_SPECS = ("an .npz with numeric y_train, a .csv with a numeric target column (FILE.csv#label=NAME), or "
                    "synthetic:SHAPE:regression[:COUNT]")


def usage_error(spec: str, task: str = "regression") -> str:
    with pytest.raises(UsageError) as caught:
        data.load(spec, task=task)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


def linear_fit_mae(dataset: data.Dataset) -> float:
    """Test MAE of a least-squares line fitted on the training split: a model-free check that targets line up
    with their inputs through the split."""
    def design(x):
        return np.c_[x.reshape(len(x), -1), np.ones(len(x))]

    weights = np.linalg.lstsq(design(dataset.x_train), dataset.y_train, rcond=None)[0]
    return float(np.mean(np.abs(design(dataset.x_test) @ weights - dataset.y_test)))


# ---- data ----

def test_synthetic_regression_is_seeded_learnable_and_sized():
    first = data.load("synthetic:16:regression:400", task="regression")
    second = data.load("synthetic:16:regression:400", task="regression")
    assert first.fingerprint() == second.fingerprint()
    assert first.task == "regression" and first.labels == ("y",) and first.num_classes == 1
    assert first.sizes() == {"train": 280, "val": 40, "test": 80}
    assert first.y_train.dtype == np.float32 and first.y_train.shape == (280,)
    assert "synthetic" in first.preprocessing
    spread = float(np.mean(np.abs(first.y_test - first.y_train.mean())))
    assert linear_fit_mae(first) < 0.2 * spread  # noise 0.1 against a target spread of about 1
    assert sum(data.load("synthetic:4x4:regression", task="regression").sizes().values()) == 1000


def test_npz_float_targets_are_kept_raw_and_split_unstratified(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = (x @ np.array([3.0, -2.0, 0.5]) + 1000.0).astype(np.float64)  # in the user's units, far from 0
    path = datagen.write_npz(tmp_path / "r.npz", x_train=x, y_train=y)
    dataset = data.load(str(path), task="regression")
    assert dataset.labels == ("y",) and dataset.num_classes == 1
    assert dataset.sizes() == {"train": 70, "val": 10, "test": 20}
    assert dataset.y_test.dtype == np.float32
    every_y = np.sort(np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test]))
    assert np.allclose(every_y, np.sort(y.astype(np.float32)))  # raw values: nothing encoded or standardised
    assert linear_fit_mae(dataset) < 1e-3
    assert dataset.preprocessing == {}


def test_npz_with_several_targets_per_sample(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(30, 2)
    path = datagen.write_npz(tmp_path / "r.npz", x_train=x, y_train=x * 2, x_test=x[:5], y_test=x[:5] * 2)
    dataset = data.load(str(path), task="regression")
    assert dataset.labels == ("y0", "y1") and dataset.num_classes == 2
    assert dataset.y_train.shape == (len(dataset.x_train), 2)
    assert np.array_equal(dataset.y_train, dataset.x_train * 2)  # targets travel with their inputs
    assert dataset.sizes() == {"train": 26, "val": 4, "test": 5}


def test_integer_targets_are_values_not_classes(tmp_path):
    x = np.arange(40, dtype=np.float32)[:, None]
    path = datagen.write_npz(tmp_path / "r.npz", x_train=x, y_train=np.arange(40) * 10)
    dataset = data.load(str(path), task="regression")
    assert dataset.y_train.dtype == np.float32 and dataset.labels == ("y",)
    assert np.array_equal(dataset.y_train, dataset.x_train[:, 0] * 10)


def test_csv_with_a_numeric_target_column(tmp_path):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 3)) * [1, 10, 100]
    price = features @ [2.0, 0.1, 0.01] + 50.0
    rows = [[f"{v:.6f}" for v in row] + [f"{p:.6f}"] for row, p in zip(features, price, strict=True)]
    path = datagen.write_csv(tmp_path / "houses.csv", rows, ["a", "b", "c", "price"])
    dataset = data.load(f"{path}#label=price", task="regression")
    assert dataset.labels == ("price",) and dataset.num_classes == 1
    assert dataset.input_shape == (3,) and dataset.sizes() == {"train": 42, "val": 6, "test": 12}
    assert set(dataset.preprocessing) == {"mean", "std"}  # the features are standardised, the target is not
    assert abs(float(np.mean(dataset.y_train)) - 50.0) < 10
    assert linear_fit_mae(dataset) < 1e-3
    by_index = data.load(f"{path}#label=3", task="regression")
    assert by_index.fingerprint() == dataset.fingerprint() and by_index.labels == ("price",)


def test_classification_of_the_same_csv_is_unchanged(tmp_path):
    rows = datagen.sensor_rows(30, ("low", "high"), 3)
    path = datagen.write_csv(tmp_path / "s.csv", rows, ["a", "b", "c", "label"])
    plain, binary = data.load(str(path)), data.load(str(path), task="binary")
    assert plain.fingerprint() == binary.fingerprint() and plain.labels == binary.labels == ("high", "low")
    assert plain.task == "classification" and binary.task == "binary"


def test_split_takes_the_task():
    x = np.arange(50, dtype=np.float32)[:, None]
    dataset = data.split("line", x, x[:, 0] / 2, ("half",), task="regression")
    assert dataset.labels == ("half",) and dataset.sizes() == {"train": 35, "val": 5, "test": 10}
    assert np.array_equal(dataset.y_test, dataset.x_test[:, 0] / 2)


# ---- refusals ----

def test_npz_with_a_nan_target(tmp_path):
    y = np.linspace(0, 1, 40)
    y[5] = np.nan
    path = datagen.write_npz(tmp_path / "nan.npz", x_train=np.ones((40, 3)), y_train=y)
    assert usage_error(str(path)) == (
        f"{path}: the targets hold NaN or infinite values in 1 sample (the first is sample 5); regression targets "
        "must be finite numbers")


def test_npz_with_an_infinite_test_target(tmp_path):
    y = np.linspace(0, 1, 40)
    y_test = np.array([0.5, np.inf, -np.inf, 0.1])
    path = datagen.write_npz(tmp_path / "inf.npz", x_train=np.ones((40, 3)), y_train=y, x_test=np.ones((4, 3)),
                             y_test=y_test)
    assert usage_error(str(path)) == (
        f"{path}: y_test holds NaN or infinite values in 2 samples (the first is sample 1); regression targets "
        "must be finite numbers")


def test_npz_with_text_targets(tmp_path):
    path = datagen.write_npz(tmp_path / "t.npz", x_train=np.ones((10, 2)), y_train=np.array(["a", "b"] * 5))
    assert usage_error(str(path)) == f"{path}: the targets hold <U1 values; regression targets must be numbers"


def test_npz_with_a_different_target_count_in_test(tmp_path):
    path = datagen.write_npz(tmp_path / "k.npz", x_train=np.ones((20, 2)), y_train=np.ones((20, 2)),
                             x_test=np.ones((4, 2)), y_test=np.ones((4, 3)))
    assert usage_error(str(path)) == f"{path}: y_test has 3 target values per sample but y_train has 2"


def test_csv_with_a_nan_target(tmp_path):
    rows = [[str(i), str(i * 2), str(i * 0.5)] for i in range(20)]
    rows[6][2] = "nan"
    path = datagen.write_csv(tmp_path / "t.csv", rows, ["a", "b", "y"])
    assert usage_error(f"{path}#label=y") == (
        f"{path}: line 8, target column 'y': nan is not a finite number (1 rows hold NaN or infinite targets)")


def test_csv_with_a_text_target(tmp_path):
    rows = [[str(i), str(i * 2), str(i * 0.5)] for i in range(20)]
    rows[3][2] = "tall"
    path = datagen.write_csv(tmp_path / "t.csv", rows, ["a", "b", "y"])
    assert usage_error(f"{path}#label=y") == (
        f"{path}: line 5, target column 'y': 'tall' is not a number (regression targets must be numeric)")


def test_csv_without_the_target_column(tmp_path):
    path = datagen.write_csv(tmp_path / "t.csv", [["1", "2"]] * 10, ["a", "b"])
    assert usage_error(f"{path}#label=price") == (
        f"{path}: no target column 'price' (columns: a, b); name it with t.csv#label=NAME or #label=INDEX")


def test_a_class_folder_is_refused_before_reading_it(tmp_path):
    (tmp_path / "cats").mkdir()
    assert usage_error(str(tmp_path)) == (
        f"{tmp_path}: a folder holds classes (one subfolder each), not target values; task 'regression' needs "
        f"{REGRESSION_SPECS}")


@pytest.mark.parametrize("spec", ["digits", "builtin:mnist", "builtin:speech_commands"])
def test_builtin_classification_datasets_are_refused_before_loading(spec):
    name = spec.removeprefix("builtin:")
    assert usage_error(spec) == (
        f"builtin:{name} holds classes, not target values; task 'regression' needs {REGRESSION_SPECS}")


def test_synthetic_spec_and_task_must_agree():
    assert usage_error("synthetic:8:3") == (
        "bad data spec 'synthetic:8:3': task 'regression' needs target values; expected "
        "synthetic:SHAPE:regression[:COUNT], e.g. synthetic:16:regression:400")
    assert usage_error("synthetic:8:regression", task="classification") == (
        "bad data spec 'synthetic:8:regression': synthetic regression targets are for task 'regression', not "
        "'classification'; expected synthetic:SHAPE:CLASSES[:COUNT], e.g. synthetic:49x10x1:12:600")
    assert usage_error("synthetic:8:regression:many") == (
        "bad data spec 'synthetic:8:regression:many': expected synthetic:SHAPE:regression[:COUNT], e.g. "
        "synthetic:16:regression:400")


def test_too_few_samples_to_split():
    assert usage_error("synthetic:8:regression:2") == (
        "synthetic:8:regression:2: 2 samples are too few to split off test and validation sets; need at least 3")


def test_unknown_task():
    assert usage_error("synthetic:8:2", task="ranking") == (
        "unknown task 'ranking'; tasks: classification, binary, regression, anomaly")


# ---- end to end ----

MLP = """
name = "tiny-regressor"
task = "regression"
metric = "mae"
[model]
builder = "mlp"
[model.args]
units = [32]
output = "linear"
[train]
epochs = 30
batch_size = 32
learning_rate = 0.003
[optimize]
sparsity = 0.5
pruning_epochs = 2
qat_epochs = 1
max_drop = 20.0
"""


def test_mlp_regressor_builds_and_reports_mae(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(MLP)
    result = CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--target", "rpi4",
                                       "--data", "synthetic:16:regression:400", "--out", str(tmp_path / "out"),
                                       "--runs", "10", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "tiny-regressor-rpi4"
    report = json.loads((folder / "report.json").read_text())
    assert report["task"] == "regression" and report["metric"] == "mae"
    assert report["dataset"]["num_classes"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    float_mae, int8_mae = variants["float32"]["metric"]["value"], variants["int8"]["metric"]["value"]
    assert variants["int8"]["metric"]["name"] == "mae"
    assert isinstance(float_mae, float) and isinstance(int8_mae, float)
    # Predicting the mean scores an MAE of about 0.65 on this data; the noise alone, 0.08.
    assert 0 < float_mae < 0.35
    assert (int8_mae - float_mae) * 100 <= 20.0  # the recipe's max_drop, in points (x100) of MAE
    assert abs(report["keras_test_metric"]["float"] - float_mae) < 1e-3
    assert not (folder / "labels.txt").exists()
