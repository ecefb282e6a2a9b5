"""What a task means for training and scoring: the loss, what the model is fitted to, and the metric.
One small record per task, in a name -> Task registry that recipes, training and benchmarks share.

- classification: softmax over the classes, sparse categorical cross-entropy, accuracy.
- binary: the same with two classes; accuracy, or the ROC AUC of the positive class's probability.
- regression: one output per target value, mean squared error; MAE or RMSE.
- anomaly: an autoencoder fitted on the normal samples (class 0) to reproduce its input; the metric is the
  ROC AUC of the per-sample reconstruction error, normal against anomalous (every other class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NORMAL_CLASS = 0


@dataclass(frozen=True)
class Task:
    name: str
    loss: str  # a tf_keras loss name
    keras_metrics: tuple[str, ...]
    higher_is_better: Callable[[str], bool]

    def training_pairs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (inputs, targets) the model is fitted to."""
        if self.name == "anomaly":
            normal = x[y == NORMAL_CLASS]
            return normal, normal
        return x, y

    def score(self, metric: str, outputs: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """The task metric of model outputs for inputs x with labels y."""
        import numpy as np  # here, so that the CLI reads the task names (click choices) without numpy
        if metric == "accuracy":
            return float(np.mean(outputs.argmax(-1) == y))
        if metric == "mae":
            return float(np.mean(np.abs(outputs.reshape(y.shape) - y)))
        if metric == "rmse":
            return float(np.sqrt(np.mean((outputs.reshape(y.shape) - y) ** 2)))
        if metric == "auc":
            from sklearn.metrics import roc_auc_score

            if self.name == "anomaly":
                error = np.mean((outputs.reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2, axis=1)
                return float(roc_auc_score(y != NORMAL_CLASS, error))
            return float(roc_auc_score(y == 1, outputs[:, 1]))
        raise ValueError(f"unknown metric {metric!r}")

    def agreement(self, expected: np.ndarray, actual: np.ndarray) -> float:
        """How closely an int8 model follows its Keras source: the share of samples with the same class,
        or, for outputs that are values, 1 - mean |difference| / the spread of the expected outputs."""
        import numpy as np
        if self.name in ("classification", "binary"):
            return float(np.mean(expected.argmax(-1) == actual.argmax(-1)))
        spread = float(np.ptp(expected)) or 1.0
        return 1.0 - float(np.mean(np.abs(expected - actual))) / spread

    def drop_points(self, metric: str, reference: float, other: float) -> float:
        """How far `other` falls behind `reference`, in points (x100) of the metric; negative is better."""
        drop = reference - other if self.higher_is_better(metric) else other - reference
        return drop * 100


def _higher(metric: str) -> bool:
    return metric in ("accuracy", "auc")


# The one task vocabulary: recipes' `task`, the data readers and every command's --task read these names.
TASKS: dict[str, Task] = {
    "classification": Task("classification", "sparse_categorical_crossentropy", ("accuracy",), _higher),
    "binary": Task("binary", "sparse_categorical_crossentropy", ("accuracy",), _higher),
    "regression": Task("regression", "mse", (), _higher),
    "anomaly": Task("anomaly", "mse", (), _higher),
}
