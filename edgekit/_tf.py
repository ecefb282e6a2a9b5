"""The only module that imports TensorFlow, tf_keras and the libraries built on them.

tensorflow-model-optimization needs Keras 2, which TensorFlow 2.21 only provides through `tf_keras`
when TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported. Import `tf` and `keras` from this module
(lazily, inside functions) instead of importing tensorflow anywhere else.

TensorFlow starts once per process, in `start`, from its arguments and the environment only: whichever
module asks first, the start-up is the same. `from edgekit._tf import tf` starts it with the defaults; a
multiworker strategy has to be asked for (distribute.check) before that, and asking after a start without it
is a UsageError rather than a silently different run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from edgekit._files import captured_stderr_fd

if TYPE_CHECKING:  # at run time `start` sets them, and __getattr__ starts TensorFlow for the first `import tf`
    import tensorflow as tf
    import tf_keras as keras

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_started: dict[str, Any] = {}  # how this process started TensorFlow: {"multiworker": bool}


def start(multiworker: bool = False) -> None:
    """Import and start TensorFlow, once per process: split the CPU into EDGEKIT_CPU_DEVICES logical devices
    and, with `multiworker`, create the MultiWorkerMirroredStrategy of TF_CONFIG (both only work before the
    devices initialise, which this does last). Again with the same settings: nothing. Multiworker after a start
    without it: a UsageError, since the collective ops it needs are configured at start-up."""
    if _started:
        if multiworker and not _started["multiworker"]:
            from edgekit.errors import UsageError

            raise UsageError("distribute 'multiworker' has to be chosen before TensorFlow starts (its collective "
                             "ops are configured at start-up), and TensorFlow already started in this process "
                             "without it; run the command in a fresh process")
        return
    from edgekit.distribute import startup

    # TensorFlow's native start-up chatter (oneDNN notices, CUDA probing on machines without a GPU) goes to
    # file descriptor 2; keep it for --verbose instead of printing it on every run.
    with captured_stderr_fd() as startup_log:
        import tensorflow
        import tf_keras

        startup(tensorflow, multiworker)
        tensorflow.config.list_logical_devices()  # initialises the devices now, inside the capture
    for line in startup_log:
        logging.getLogger("edgekit").debug("tensorflow: %s", line)
    tensorflow.get_logger().setLevel("ERROR")
    globals().update(tf=tensorflow, keras=tf_keras)  # later lookups find them without __getattr__
    _started["multiworker"] = multiworker


def __getattr__(name: str) -> Any:
    """`tf` and `keras`, after starting TensorFlow with the defaults if nothing started it yet."""
    if name in ("tf", "keras"):
        start()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tfmot():
    """tensorflow_model_optimization, imported on first use (it costs about a second)."""
    start()
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def tf2onnx():
    start()
    import tf2onnx as module

    return module


def reserve_layer_names(names: list[str]) -> None:
    """Move tf_keras's automatic layer naming past `names` ('conv2d_3' reserves conv2d up to _3), so a layer
    created without a name cannot take one of them. tf_keras keeps these counters per (namespace, prefix) in
    a private map; `keras.backend.get_uid` counts in another one, which layer naming never reads."""
    from tf_keras.src import backend

    counters = backend.get_default_graph_uid_map()
    for name in names:
        base, _, index = name.rpartition("_")
        prefix, needed = (base, int(index) + 1) if base and index.isdigit() else (name, 1)
        counters[("", prefix)] = max(counters[("", prefix)], needed)


@contextlib.contextmanager
def serving_export(model):
    """A tf.Module holding `model` and its serving signature (the call with training=False, traced by tf_keras's
    own `default_save_signature`), inside a scope in which a SavedModel export of it writes that signature and
    the variables only. tf_keras's export of a model also traces every layer's call functions so that Keras can
    load the model back, which the TFLite converter (it converts the serving signature) never reads: that
    tracing is most of a conversion's time (measured in benchmarks/speedups.json). The signature is the very
    function tf_keras would export, traced before any layer function is wrapped, so the converter's input and
    the file it writes are the same."""
    from tf_keras.src.saving.legacy.saved_model import save_impl
    from tf_keras.src.saving.legacy.saved_model import utils as saved_model_utils

    start()
    exportable = tf.Module()
    exportable.model = model  # the variables, through the model's own tracking
    exportable._default_save_signature = save_impl.default_save_signature(model)  # the name tf.saved_model looks for
    with saved_model_utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=False):
        yield exportable


__all__ = ["tf", "keras", "tfmot", "tf2onnx", "reserve_layer_names", "serving_export"]
