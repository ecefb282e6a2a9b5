"""`synthetic:SHAPE:CLASSES[:COUNT]`: seeded, learnable data for tests and for benchmarking without data.

Each class has its own mean pattern (standard normal values); a sample is its class's mean plus standard
normal noise, so a model can learn the task and the same spec always gives the same arrays."""

from __future__ import annotations

import numpy as np

from edgekit.data.core import SPLIT_SEED, Samples
from edgekit.errors import UsageError

PER_CLASS = 100  # samples per class when COUNT is left out
SYNTAX = "synthetic:SHAPE:CLASSES[:COUNT], e.g. synthetic:49x10x1:12:600"


def read_synthetic(spec: str) -> Samples:
    fields = spec.split(":")[1:]
    try:
        if len(fields) not in (2, 3):
            raise ValueError
        shape = tuple(int(d) for d in fields[0].split("x"))
        classes = int(fields[1])
        count = int(fields[2]) if len(fields) == 3 else PER_CLASS * classes
    except ValueError:
        raise UsageError(f"bad data spec '{spec}': expected {SYNTAX}") from None
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
