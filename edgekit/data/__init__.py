"""Datasets: a `--data` spec -> train / validation / test arrays, plus representative samples.

A spec is one of:
  builtin:NAME            digits (scikit-learn, offline), mnist, fashion_mnist, cifar10 (keras.datasets),
                          speech_commands (v0.02 as MLPerf Tiny KWS MFCCs); downloads use Keras's cache
                          ($KERAS_HOME or ~/.keras); a plain NAME is the same built-in (./NAME
                          for a folder of that name)
  synthetic:SHAPE:CLASSES[:COUNT]
                          seeded, learnable data, e.g. synthetic:49x10x1:12:600 (COUNT: 100 per class)
  synthetic:SHAPE:regression[:COUNT]
                          (task regression) a seeded linear-plus-noise target, e.g. synthetic:16:regression:400
                          (COUNT: 1000)
  FILE.npz                x_train, y_train; optionally x_val, y_val, x_test, y_test
  FILE.csv[#label=COLUMN] a label column (by header name or 0-based index; default `label`), the rest numeric;
                          for task regression, the numeric target column
  FOLDER                  one subfolder per class of images (.png .jpg .jpeg .bmp .gif .webp) or of .wav clips

Labels may be integers or names; classes are their sorted values (numbers sort as numbers) and
`Dataset.labels` holds the names. Parts a spec does not give are split off with a fixed seed, stratified:
test 20%, validation 10%. `input_shape` (the model's input) reshapes the data when the number of values
matches, and resizes and converts the channels of images; None keeps the data's own shape. Every value
transformation (pixel scale, CSV standardisation, image resize, audio features) is recorded in
`Dataset.preprocessing`, so the deployed model can be fed the same way.

With task "regression" the targets are float32 values as stored, never standardised, so a metric such as
MAE is in the data's own units: an .npz `y_*` of shape (n,) or (n, k), a .csv's target column, or the
synthetic target. `Dataset.labels` names the targets (`y`, `y0`..`y{k-1}`, or the CSV column), so
`num_classes` is the number of target values, and the split is seeded but not stratified. Folders and the
built-ins hold classes, so they refuse task regression. Every other task (binary, anomaly) reads classes.

Reading the data never imports TensorFlow until a reader needs it (images, audio, resizing, keras.datasets).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from edgekit.data.builtin import DATASETS, dataset
from edgekit.data.core import REGRESSION, SPLIT_SEED, TEST_FRACTION, VAL_FRACTION, Dataset, Samples, assemble, split
from edgekit.errors import UsageError
from edgekit.tasks import TASKS

__all__ = ["DATASETS", "SPLIT_SEED", "TEST_FRACTION", "VAL_FRACTION", "Dataset", "Samples", "dataset", "load",
           "load_for_model", "split"]

SPECS = "builtin:NAME, synthetic:SHAPE:CLASSES[:COUNT], FILE.npz, FILE.csv[#label=COLUMN], or a class FOLDER"
REGRESSION_SPECS = ("an .npz with numeric y_train, a .csv with a numeric target column (FILE.csv#label=NAME), or "
                    "synthetic:SHAPE:regression[:COUNT]")


def load(spec: str, input_shape: tuple[int, ...] | None = None, task: str = "classification") -> Dataset:
    """Read a dataset spec (see the module docstring) for a task (see edgekit.tasks) and split it into
    train / validation / test."""
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'; tasks: {', '.join(TASKS)}")
    name = spec.removeprefix("builtin:")
    if spec.startswith("builtin:") or spec in DATASETS:
        if name not in DATASETS:
            raise _unknown_builtin(spec, name)
        if task == REGRESSION:
            raise UsageError(f"builtin:{name} holds classes, not target values; task 'regression' needs "
                             f"{REGRESSION_SPECS}")
        return assemble(name, DATASETS[name](), input_shape, task)
    if spec.startswith("synthetic:"):
        from edgekit.data.synthetic import read_synthetic

        return assemble(spec, read_synthetic(spec, task), input_shape, task)
    return assemble(spec, _read_path(spec, input_shape, task), input_shape, task)


def load_for_model(spec: str, model: Path | tuple[int, ...], task: str = "classification") -> Dataset:
    """`load` shaped for a model: `model` is its input shape without the batch dimension, or a .tflite or
    .onnx file whose first input gives it (read statically, without running the model)."""
    if isinstance(model, Path):
        from edgekit.model_info import inspect_model

        model = tuple(inspect_model(model).inputs[0].shape[1:])
    return load(spec, input_shape=model, task=task)


def _read_path(spec: str, input_shape: tuple[int, ...] | None, task: str) -> Samples:
    location, _, options = spec.partition("#")
    path = Path(location)
    if not path.exists():
        close = difflib.get_close_matches(location, DATASETS, n=1)
        hint = f"did you mean 'builtin:{close[0]}'? " if close else ""
        raise UsageError(f"{location}: no such file or folder; {hint}a data spec is {SPECS}")
    if options and path.suffix.lower() != ".csv":
        raise UsageError(f"{spec}: '#{options}' options apply only to .csv files")
    if path.is_dir():
        if task == REGRESSION:
            raise UsageError(f"{path}: a folder holds classes (one subfolder each), not target values; task "
                             f"'regression' needs {REGRESSION_SPECS}")
        from edgekit.data.folders import read_folder

        return read_folder(path, input_shape)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from edgekit.data.files import read_npz

        return read_npz(path)
    if suffix == ".csv":
        from edgekit.data.files import read_csv

        return read_csv(path, _csv_label(spec, options), regression=task == REGRESSION)
    raise UsageError(f"{path}: unsupported data file '{path.suffix or path.name}'; a data spec is {SPECS}")


def _csv_label(spec: str, options: str) -> str | None:
    if not options:
        return None
    key, equals, value = options.partition("=")
    if key != "label" or not equals or not value:
        raise UsageError(f"{spec}: unknown option '#{options}'; a .csv takes #label=NAME or #label=INDEX")
    return value


def _unknown_builtin(spec: str, name: str) -> UsageError:
    close = difflib.get_close_matches(name, DATASETS, n=1)
    hint = f"did you mean 'builtin:{close[0]}'? " if close else ""
    return UsageError(f"unknown built-in dataset '{spec}'; {hint}built-ins: {', '.join(sorted(DATASETS))}")
