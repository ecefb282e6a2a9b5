"""`synthetic:SHAPE:CLASSES[:COUNT]` and `synthetic:SHAPE:regression[:COUNT]`: seeded, learnable data for
tests and for benchmarking without data.

Classes: each class has its own mean pattern (standard normal values); a sample is its class's mean plus
standard normal noise. Regression: standard normal inputs, and one target, their dot product with fixed
standard normal weights scaled by 1/sqrt(input values) (so the target's spread is about 1) plus noise of
spread 0.1. A model can learn either, and the same spec always gives the same arrays."""

from __future__ import annotations

import math

import numpy as np

from edgekit.data.core import REGRESSION, SPLIT_SEED, Samples
from edgekit.errors import UsageError

PER_CLASS = 100  # samples per class when COUNT is left out
REGRESSION_COUNT = 1000  # samples when COUNT is left out
REGRESSION_NOISE = 0.1  # spread of the noise added to the regression target
SYNTAX = "synthetic:SHAPE:CLASSES[:COUNT], e.g. synthetic:49x10x1:12:600"
REGRESSION_SYNTAX = "synthetic:SHAPE:regression[:COUNT], e.g. synthetic:16:regression:400"


def read_synthetic(spec: str, task: str = "classification") -> Samples:
    fields = spec.split(":")[1:]
    regression = len(fields) >= 2 and fields[1] == REGRESSION
    if regression != (task == REGRESSION):
        if regression:
            raise UsageError(f"bad data spec '{spec}': synthetic regression targets are for task 'regression', not "
                             f"'{task}'; expected {SYNTAX}")
        raise UsageError(f"bad data spec '{spec}': task 'regression' needs target values; expected "
                         f"{REGRESSION_SYNTAX}")
    try:
        if len(fields) not in (2, 3):
            raise ValueError
        shape = tuple(int(d) for d in fields[0].split("x"))
        classes = 0 if regression else int(fields[1])
        count = int(fields[2]) if len(fields) == 3 else REGRESSION_COUNT if regression else PER_CLASS * classes
    except ValueError:
        raise UsageError(f"bad data spec '{spec}': expected {REGRESSION_SYNTAX if regression else SYNTAX}") from None
    if regression:
        if min(shape) < 1 or count < 1:
            raise UsageError(f"bad data spec '{spec}': SHAPE sizes and COUNT must be >= 1; expected "
                             f"{REGRESSION_SYNTAX}")
        return _regression(spec, shape, count)
    if min(shape) < 1 or classes < 2 or count < classes:
        raise UsageError(f"bad data spec '{spec}': SHAPE sizes must be >= 1, CLASSES >= 2 and COUNT >= CLASSES; "
                         f"expected {SYNTAX}")
    rng = np.random.default_rng(SPLIT_SEED)
    means = rng.standard_normal((classes, *shape), dtype=np.float32)
    y = np.arange(count) % classes
    rng.shuffle(y)
    x = means[y] + rng.standard_normal((count, *shape), dtype=np.float32)
    return Samples(spec, x, y, labels=tuple(str(c) for c in range(classes)),
                   preprocessing={"synthetic": "class mean (standard normal) + standard normal noise"})


def _regression(spec: str, shape: tuple[int, ...], count: int) -> Samples:
    rng = np.random.default_rng(SPLIT_SEED)
    size = math.prod(shape)
    weights = rng.standard_normal(size, dtype=np.float32) / np.float32(math.sqrt(size))
    x = rng.standard_normal((count, *shape), dtype=np.float32)
    noise = np.float32(REGRESSION_NOISE) * rng.standard_normal(count, dtype=np.float32)
    y = x.reshape(count, size) @ weights + noise
    return Samples(spec, x, y.astype(np.float32), labels=("y",),
                   preprocessing={"synthetic": "standard normal inputs; target y = inputs . weights (standard "
                                  f"normal / sqrt({size})) + {REGRESSION_NOISE} x standard normal noise"})
