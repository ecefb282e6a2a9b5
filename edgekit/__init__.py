"""edgekit: from a small Keras model to a device, with honest numbers.

The Python API uses the CLI's verbs: `edgekit.build.build`, `edgekit.train.train`,
`edgekit.optimize.optimize`, `edgekit.convert`, `edgekit.bench.bench`. Importing `edgekit` itself does
not import TensorFlow.
"""

from importlib import metadata

try:
    __version__ = metadata.version("edgekit")
except metadata.PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
