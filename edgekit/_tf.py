"""The only module that imports TensorFlow, tf_keras and the libraries built on them.

tensorflow-model-optimization needs Keras 2, which TensorFlow 2.21 only provides through `tf_keras`
when TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported. Import this module (lazily,
inside functions) instead of importing tensorflow anywhere else.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")


def tfmot():
    """tensorflow_model_optimization, imported on first use (it costs about a second)."""
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def tf2onnx():
    import tf2onnx as module

    return module


__all__ = ["tf", "keras", "tfmot", "tf2onnx"]
