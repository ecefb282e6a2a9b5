"""The `Dataset` every stage reads, and the checks, shape fitting and split that turn a reader's
`Samples` into one. Readers only decode; everything they share happens here, once."""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import UsageError

log = logging.getLogger("edgekit")

# The split is fixed, independent of the training seed, so that every build and every figure in a
# report is measured on the same test samples.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1  # of the whole; 1/8 of what is left once the test set is held out
PIXEL_SCALE = 1 / 255  # 8-bit arrays are read as pixels
REGRESSION = "regression"  # the one task whose targets are values; every other task's are classes


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    # Class names (y holds int64 indices into them), or for regression the target names (y holds float32
    # values, shape (n,) for one target or (n, k) for k), so num_classes is the model's output count.
    labels: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # What turned the stored values into model inputs, so the deployed model can do the same:
    # {"scale", "offset"}: x * scale + offset; {"mean", "std"}: (x - mean) / std, per input value in the
    # model input's (row-major) order;
    # "resize" / "channels" for images; "audio" / "features" for clips turned into MFCCs.
    preprocessing: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0  # files in a folder that could not be decoded
    task: str = "classification"  # as loaded for; "regression": y holds raw target values, never standardised

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
                "preprocessing": self.preprocessing, "skipped": self.skipped,
                "split_seed": SPLIT_SEED, "sha256": self.fingerprint()}


@dataclass
class Samples:
    """What a reader returns: decoded arrays, before the shared checks, shape fitting and split.

    `y` holds raw labels (integers or names) unless `labels` is given, in which case `y` already holds
    indices into it. For regression `y` holds target values and `labels`, when given, their names.
    `train` is everything when neither `val` nor `test` is given."""

    source: str  # the file, folder or spec that error messages name
    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    labels: tuple[str, ...] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    images: bool = False  # may be resized and channel-converted to fit the model input
    standardize: bool = False  # per-value mean/std from the training split
    skipped: int = 0


def assemble(name: str, samples: Samples, input_shape: tuple[int, ...] | None = None,
             task: str = "classification") -> Dataset:
    """Labels to indices (regression: targets to float32 values), inputs to float32 (8-bit as pixels),
    checks, fit to `input_shape`, then the parts the reader did not give are split off (test first;
    stratified by class, except for regression) and CSV features are standardised."""
    source = samples.source
    regression = task == REGRESSION
    if len(samples.x) == 0:
        raise UsageError(f"{source}: no samples")
    parts = {"train": (samples.x, samples.y)}
    for part in ("val", "test"):
        if getattr(samples, part) is not None:
            parts[part] = getattr(samples, part)
    named = len(parts) > 1  # messages say x_train / y_test only when the file named them so
    if regression:
        labels, parts = _float_targets(source, parts, samples.labels, named)
    else:
        labels, parts = _encode_labels(source, parts, samples.labels, named)
    preprocessing = dict(samples.preprocessing)
    first_shape = None
    for part, (x, y) in list(parts.items()):
        where = f"x_{part}" if named else "the data"
        if len(x) != len(y):
            raise UsageError(f"{source}: {where} has {len(x)} samples but {len(y)} "
                             f"{'targets' if regression else 'labels'}")
        x = _as_float(source, x, where, preprocessing)
        if first_shape is not None and x.shape[1:] != first_shape:
            raise UsageError(f"{source}: {where} samples are {shape_text(x.shape[1:])} but x_train samples are "
                             f"{shape_text(first_shape)}")
        first_shape = x.shape[1:]
        _check_finite(source, x, where)
        parts[part] = (x, y)
    for part, (x, y) in parts.items():
        parts[part] = (fit_shape(source, x, input_shape, samples.images, preprocessing), y)

    x_train, y_train = parts["train"]
    check_enough = _check_enough_values if regression else _check_enough
    if "test" not in parts:
        check_enough(source, y_train, labels, [p for p in ("test", "val") if p not in parts])
        x_train, x_test, y_train, y_test = _hold_out(source, x_train, y_train, TEST_FRACTION, not regression)
        parts["test"] = (x_test, y_test)
    if "val" not in parts:
        check_enough(source, y_train, labels, ["val"])
        x_train, x_val, y_train, y_val = _hold_out(source, x_train, y_train, VAL_FRACTION / (1 - TEST_FRACTION),
                                                   not regression)
        parts["val"] = (x_val, y_val)
    parts["train"] = (x_train, y_train)
    if samples.standardize:
        parts = _standardize(parts, preprocessing)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = parts["train"], parts["val"], parts["test"]
    return Dataset(name, labels, x_train, y_train, x_val, y_val, x_test, y_test, preprocessing=preprocessing,
                   skipped=samples.skipped, task=task)


def split(name: str, x: np.ndarray, y: np.ndarray, labels: tuple[str, ...],
          preprocessing: dict[str, Any] | None = None, task: str = "classification") -> Dataset:
    """Train / validation / test split with the fixed SPLIT_SEED: stratified, `y` holding label indices; or for
    task "regression", not stratified, `y` holding target values and `labels` their names."""
    return assemble(name, Samples(name, x, y, labels=tuple(labels), preprocessing=preprocessing or {}),
                    task=task)


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalars"


def fit_shape(source: str, x: np.ndarray, input_shape: tuple[int, ...] | None, images: bool,
              preprocessing: dict[str, Any]) -> np.ndarray:
    """Reshape (same number of values) or, for images, resize and convert channels to the model input."""
    if input_shape is None or x.shape[1:] == tuple(input_shape):
        return x
    target = tuple(int(d) for d in input_shape)
    if images and _image_like(x.shape[1:]) and len(target) == 3 and target[-1] in (1, 3):
        return to_image(x, target, preprocessing)
    if math.prod(x.shape[1:]) == math.prod(target):
        return x.reshape((len(x), *target))
    raise UsageError(f"{source}: samples of shape {shape_text(x.shape[1:])} ({math.prod(x.shape[1:])} values) "
                     f"cannot fit the model input {shape_text(target)} ({math.prod(target)} values)")


def to_image(x: np.ndarray, target: tuple[int, int, int], preprocessing: dict[str, Any]) -> np.ndarray:
    """Images (N, H, W[, C]) -> (N, *target): alpha dropped, gray <-> RGB, bilinear antialiased resize."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    x = convert_channels(x, target[-1])
    if x.shape[1:3] != target[:2]:
        from edgekit._tf import tf

        log.info("resizing %d images from %s to %s", len(x), shape_text(x.shape[1:3]), shape_text(target[:2]))
        x = np.concatenate([tf.image.resize(x[i:i + 2048], target[:2], antialias=True).numpy()
                            for i in range(0, len(x), 2048)])
        preprocessing["resize"] = {"size": list(target[:2]), "method": "bilinear, antialiased"}
    preprocessing["channels"] = target[-1]
    return x.astype(np.float32, copy=False)


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(..., C) with C in 1..4 -> (..., channels); luminance weights as tf.image.rgb_to_grayscale."""
    if x.shape[-1] in (2, 4):
        x = x[..., :-1]  # alpha
    if x.shape[-1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=-1)
    return (x @ np.array([0.2989, 0.587, 0.114], dtype=np.float32))[..., np.newaxis]


def _image_like(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 2, 3, 4))


def _as_float(source: str, x: np.ndarray, where: str, preprocessing: dict[str, Any]) -> np.ndarray:
    if x.dtype == np.uint8:
        preprocessing.setdefault("scale", PIXEL_SCALE)
        preprocessing.setdefault("offset", 0.0)
        return x.astype(np.float32) * np.float32(PIXEL_SCALE)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{source}: {where} holds {x.dtype} values; inputs must be numbers")
    return x.astype(np.float32, copy=False)


def _check_finite(source: str, x: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise UsageError(f"{source}: {where} holds NaN or infinite values in {int(bad.sum())} samples "
                         f"(the first is sample {int(np.argmax(bad))})")


def _encode_labels(source: str, parts: dict, names: tuple[str, ...] | None, named: bool):
    """Raw labels -> indices into the sorted training classes (integers sort as numbers, names as text)."""
    raw = {part: np.asarray(y) for part, (_, y) in parts.items()}
    for part, y in raw.items():
        if y.ndim != 1:
            where = f"y_{part}" if named else "the labels"
            raise UsageError(f"{source}: {where} has shape {shape_text(y.shape)}; give one label per sample "
                             "(a class index or name, not one-hot)")
    values = {part: [_label_value(source, v) for v in y.tolist()] for part, y in raw.items()}
    if names is not None:
        classes: list = list(range(len(names)))
    else:
        if not all(isinstance(v, int) for vs in values.values() for v in vs):
            values = {part: [str(v) for v in vs] for part, vs in values.items()}
        classes = sorted(set(values["train"]))
        names = tuple(str(c) for c in classes)
    index = {c: i for i, c in enumerate(classes)}
    encoded = {}
    for part, (x, _) in parts.items():
        unknown = next((v for v in values[part] if v not in index), None)
        if unknown is not None:
            where = f"y_{part}" if named else "the labels"
            raise UsageError(f"{source}: {where} holds label '{unknown}', which is not a training class "
                             f"({_short_list(names)})")
        encoded[part] = (x, np.array([index[v] for v in values[part]], dtype=np.int64))
    present = set(encoded["train"][1].tolist())
    if len(present) < 2:
        only = names[present.pop()] if present else "nothing"
        raise UsageError(f"{source}: every training sample has label '{only}'; a classifier needs at least 2 classes")
    return tuple(names), encoded


def _float_targets(source: str, parts: dict, names: tuple[str, ...] | None, named: bool):
    """Regression targets -> float32 values as given (not standardised, so MAE is in the data's units):
    (n,) for one target or (n, k) for k, the same k in every part. Unnamed targets are 'y' or y0..y{k-1}."""
    encoded, train_shape = {}, None
    for part, (x, y) in parts.items():
        where, s = (f"y_{part}", "s") if named else ("the targets", "")  # "y_test holds", "the targets hold"
        y = np.asarray(y)
        if y.dtype.kind not in "iuf":
            raise UsageError(f"{source}: {where} hold{s} {y.dtype} values; regression targets must be numbers")
        if y.ndim not in (1, 2) or 0 in y.shape[1:]:
            raise UsageError(f"{source}: {where} {'has' if named else 'have'} shape {shape_text(y.shape)}; give "
                             "one target value per sample (n) or one row of values per sample (n x k)")
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf and is refused below
            y = y.astype(np.float32)
        bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        if bad.any():
            count = int(bad.sum())
            raise UsageError(f"{source}: {where} hold{s} NaN or infinite values in {count} sample"
                             f"{'s' if count > 1 else ''} (the first is sample {int(np.argmax(bad))}); "
                             "regression targets must be finite numbers")
        if train_shape is not None and y.shape[1:] != train_shape:  # only a file that names its parts gets here
            raise UsageError(f"{source}: {where} has {_target_count(y.shape[1:])} target values per sample but "
                             f"y_train has {_target_count(train_shape)}")
        train_shape = y.shape[1:] if train_shape is None else train_shape
        encoded[part] = (x, y)
    count = _target_count(encoded["train"][1].shape[1:])  # every part has y_train's count (checked above)
    if names is None:
        names = ("y",) if count == 1 else tuple(f"y{i}" for i in range(count))
    elif len(names) != count:
        raise UsageError(f"{source}: {count} target values per sample but {len(names)} target names")
    return tuple(names), encoded


def _target_count(per_sample: tuple[int, ...]) -> int:
    return per_sample[0] if per_sample else 1


def _label_value(source: str, value) -> int | str:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise UsageError(f"{source}: a sample has an empty label; every sample needs a class")
        try:
            return int(text)
        except ValueError:
            return text
    if isinstance(value, float) and not value.is_integer():
        raise UsageError(f"{source}: label {value!r} is not a class; labels are integers or names")
    return int(value)


def _short_list(names: tuple[str, ...]) -> str:
    return ", ".join(names) if len(names) <= 12 else ", ".join(names[:12]) + f", ... ({len(names)} in all)"


def _check_enough(source: str, y: np.ndarray, labels: tuple[str, ...], holdouts: list[str]) -> None:
    """Before splitting: every class can reach every held-out set, and each set can hold every class."""
    counts = Counter(y.tolist())
    needed = 1 + len(holdouts)
    what = " and ".join("validation" if h == "val" else h for h in holdouts)
    rarest, rarest_count = min(counts.items(), key=lambda item: (item[1], item[0]))
    if rarest_count < needed:
        raise UsageError(f"{source}: class '{labels[rarest]}' has {rarest_count} sample(s); splitting off "
                         f"{what} sets needs at least {needed} per class")
    fractions = [TEST_FRACTION if h == "test" else VAL_FRACTION / (1 - TEST_FRACTION) for h in holdouts]
    need = _samples_needed(len(counts), fractions)
    if len(y) < need:
        raise UsageError(f"{source}: {len(y)} samples are too few to split off stratified {what} sets for "
                         f"{len(counts)} classes; need at least {need}")


def _samples_needed(classes: int, fractions: list[float]) -> int:
    """The smallest count from which each held-out set, and what is left, holds every class."""
    def enough(n: int) -> bool:
        for fraction in fractions:
            held = math.ceil(fraction * n)
            if held < classes or n - held < classes:
                return False
            n -= held
        return True

    n = classes
    while not enough(n):
        n += 1
    return n


def _check_enough_values(source: str, y: np.ndarray, labels: tuple[str, ...], holdouts: list[str]) -> None:
    """Before a regression split: each held-out set, and what is left, gets at least one sample."""
    fractions = [TEST_FRACTION if h == "test" else VAL_FRACTION / (1 - TEST_FRACTION) for h in holdouts]
    need = _samples_needed(1, fractions)
    if len(y) < need:
        what = " and ".join("validation" if h == "val" else h for h in holdouts)
        raise UsageError(f"{source}: {len(y)} samples are too few to split off {what} sets; need at least {need}")


def _hold_out(source: str, x: np.ndarray, y: np.ndarray, fraction: float, stratify: bool = True):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, stratify=y if stratify else None,
                                random_state=SPLIT_SEED)
    except ValueError as e:  # a class split too thin by an earlier hold-out; the checks above catch the rest
        raise UsageError(f"{source}: too few samples to split: {str(e).splitlines()[0]}") from e


def _standardize(parts: dict, preprocessing: dict[str, Any]) -> dict:
    """Per-value mean and std from the training split, rounded to what is recorded, then applied."""
    x_train = parts["train"][0]
    mean = np.array([float(f"{v:.7g}") for v in x_train.mean(axis=0).ravel()], dtype=np.float32)
    std = x_train.std(axis=0).ravel()
    std = np.array([float(f"{v:.7g}") if v > 1e-6 else 1.0 for v in std], dtype=np.float32)
    preprocessing.update(mean=mean.tolist(), std=std.tolist())
    shape = x_train.shape[1:]
    mean, std = mean.reshape(shape), std.reshape(shape)
    return {part: (((x - mean) / std).astype(np.float32), y) for part, (x, y) in parts.items()}
