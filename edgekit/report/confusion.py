"""The confusion matrix report.json holds for a classification build: counted from predictions, from a model
file run on the test split, or recomputed from a build folder (`edgekit report`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError

CLASS_TASKS = ("classification", "binary")  # tasks whose outputs are class scores (argmax is the prediction)


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
              classes: Sequence[str]) -> dict[str, Any]:
    """The confusion matrix of predicted against true class indices, as report.json stores it: `matrix[i][j]`
    counts the samples of true class `classes[i]` predicted as `classes[j]`."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be two equal 1-D arrays")
    count = len(classes)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if len(values) and (values.min() < 0 or values.max() >= count):
            raise ValueError(f"{name} holds class indices outside 0..{count - 1}")
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return {"classes": [str(c) for c in classes], "matrix": matrix.tolist(), "rows": "true class",
            "columns": "predicted class", "samples": int(len(y_true))}


def model_confusion(model: Path, x_test: np.ndarray, y_test: np.ndarray, classes: Sequence[str],
                   variant: str, trusted_sha256: str | None = None) -> dict[str, Any]:
    """Run `model` (a .tflite or .onnx file) on the test split and return report.json's `confusion_matrix`
    section: the variant, the split, and `confusion` of its predictions. `trusted_sha256`: as in
    runtimes.host.open_runner."""
    from edgekit.runtimes.host import open_runner

    predicted = open_runner(model, trusted_sha256=trusted_sha256).predict(x_test).argmax(-1)
    return {"variant": variant, "split": "test", **confusion(y_test, predicted, classes)}


def recompute_confusion(directory: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The selected variant's confusion matrix, from the build folder's model file and the dataset that
    report.json names. The data must be the very data the build used (same sha256), or nothing is computed.
    Raises EdgekitError saying why it cannot be computed."""
    if report.get("task") not in CLASS_TASKS:
        raise EdgekitError(f"task '{report.get('task')}' has no classes")
    described = report["dataset"]
    from edgekit import data

    try:
        dataset = data.load(described["name"], input_shape=tuple(described["input_shape"]), task=report["task"])
    except EdgekitError as e:
        raise EdgekitError(f"the dataset '{described['name']}' does not load here ({e})") from None
    if dataset.fingerprint() != described.get("sha256"):
        raise EdgekitError(f"the dataset '{described['name']}' loads here, but not as the data this build used "
                           "(its sha256 differs)")
    selected = next(v for v in report["variants"] if v["name"] == report["selected"])
    model = Path(directory) / selected["file"]
    if not model.is_file():
        raise EdgekitError(f"{model.name} is not in the folder")
    return model_confusion(model, dataset.x_test, dataset.y_test, dataset.labels, selected["name"])
