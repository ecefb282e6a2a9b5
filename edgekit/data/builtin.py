"""Built-in datasets (`builtin:NAME`), registered with `@dataset` in DATASETS.

Downloads go through Keras's cache: $KERAS_HOME, or ~/.keras when it is unset, under `datasets/`. A file
already there is used without a network; on a machine without one, put the file there by hand (the error
says which file and where)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgekit.data.core import Samples
from edgekit.errors import UsageError

log = logging.getLogger("edgekit")

DATASETS: dict[str, Callable[[], Samples]] = {}

KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))


def dataset(name: str):
    """Register a loader returning the dataset's `Samples`."""

    def register(loader):
        DATASETS[name] = loader
        return loader

    return register


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())


@contextlib.contextmanager
def keras_download() -> Iterator[None]:
    """Around a tf_keras download: its "Downloading data from URL" line and progress bar (io_utils.print_msg)
    are written to sys.stdout, where they would land in the middle of `--json` output; they are progress, so
    they go to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@dataset("digits")
def _digits() -> Samples:
    """scikit-learn's 1,797 handwritten digits, 8x8 pixels with values 0..16, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    return Samples("builtin:digits", x, digits.target.astype(np.int64), labels=DIGITS, images=True,
                   preprocessing={"scale": 1 / 16, "offset": 0.0})


@dataset("mnist")
def _mnist() -> Samples:
    """70,000 28x28 handwritten digits; Keras's own test split."""
    return _keras_dataset("mnist", ["mnist.npz"], {"mnist.npz": "mnist.npz"}, DIGITS)


@dataset("fashion_mnist")
def _fashion_mnist() -> Samples:
    """70,000 28x28 clothing images in 10 classes; Keras's own test split."""
    names = ["train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz"]
    return _keras_dataset("fashion_mnist", [f"fashion-mnist/{n}" for n in names],
                          {f"fashion-mnist/{n}": n for n in names}, FASHION_LABELS)


@dataset("cifar10")
def _cifar10() -> Samples:
    """60,000 32x32 colour images in 10 classes; Keras's own test split."""
    # tf_keras's get_file keeps the archive under this name, next to the folder it unpacks.
    return _keras_dataset("cifar10", ["cifar-10-batches-py.tar.gz"],
                          {"cifar-10-batches-py.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
                          CIFAR10_LABELS)


def _keras_dataset(name: str, files: list[str], origins: dict[str, str], labels: tuple[str, ...]) -> Samples:
    """keras.datasets.NAME.load_data() on the Keras cache, with a one-line error when it cannot download."""
    from edgekit._tf import keras

    datasets = keras_cache() / "datasets"
    missing = [f for f in files if not (datasets / f).exists()]
    try:
        with keras_download():
            (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data(
                cache_dir=str(keras_cache()))
    except Exception as e:  # tf_keras raises a bare Exception for a failed download
        log.debug("builtin:%s: %s", name, e)
        if not missing:
            raise UsageError(f"builtin:{name}: {datasets / files[0]} is in the Keras cache but could not be read "
                             f"({str(e).splitlines()[0]}); delete it to download it again") from e
        origin = origins[missing[0]]
        url = origin if "://" in origin else KERAS_DATASETS_URL + origin
        more = f" (and {len(missing) - 1} more from {KERAS_DATASETS_URL})" if len(missing) > 1 else ""
        raise UsageError(f"builtin:{name}: could not download {url}, and the Keras cache has no "
                         f"{datasets / missing[0]}; without network access, download it elsewhere and save it as "
                         f"{datasets / missing[0]}{more}") from e
    gray = x_train.ndim == 3
    x_train, x_test = (x[..., np.newaxis] if gray else x for x in (x_train, x_test))
    return Samples(f"builtin:{name}", x_train, y_train.ravel(), test=(x_test, y_test.ravel()), labels=labels,
                   images=True)


@dataset("speech_commands")
def _speech_commands() -> Samples:
    """Speech Commands v0.02 (2.3 GB) as MLPerf Tiny KWS features: 12 classes of 49x10x1 MFCCs."""
    from edgekit.data import speech_commands

    return speech_commands.read(speech_commands.fetch(keras_cache()))
