"""Datasets: a spec string -> train / validation / test arrays, plus representative samples.

A dataset spec is a built-in name (`digits`). Built-in datasets are registered with `@dataset`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.errors import UsageError, unknown_name

# The split is fixed, independent of the training seed, so that every build and every figure in a
# report is measured on the same test samples.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1

DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]] = {}


def dataset(name: str):
    """Register a loader returning (x float32 with a channel axis, y int labels, label names)."""

    def register(loader):
        DATASETS[name] = loader
        return loader

    return register


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    labels: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}

    def representative(self, count: int, seed: int = 0) -> np.ndarray:
        """`count` training samples drawn without replacement, for int8 calibration."""
        rng = np.random.default_rng(seed)
        index = rng.choice(len(self.x_train), size=min(count, len(self.x_train)), replace=False)
        return self.x_train[np.sort(index)]

    def fingerprint(self) -> str:
        """sha256 over every array, so a manifest says exactly which data a model saw."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, **self.sizes(), "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "labels": list(self.labels),
                "split_seed": SPLIT_SEED, "sha256": self.fingerprint()}


def load(spec: str) -> Dataset:
    if spec not in DATASETS:
        raise unknown_name("dataset", spec, DATASETS, "edgekit models")
    x, y, labels = DATASETS[spec]()
    return split(spec, x, y, labels)


def split(name: str, x: np.ndarray, y: np.ndarray, labels: tuple[str, ...]) -> Dataset:
    """Stratified train / validation / test split with the fixed SPLIT_SEED."""
    from sklearn.model_selection import train_test_split

    if len(x) != len(y):
        raise UsageError(f"dataset '{name}': {len(x)} inputs but {len(y)} labels")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION), stratify=y_rest,
        random_state=SPLIT_SEED)
    return Dataset(name, labels, x_train, y_train, x_val, y_val, x_test, y_test)


@dataset("digits")
def _digits():
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels with values 0..16, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    return x, digits.target.astype(np.int64), tuple(str(d) for d in range(10))
