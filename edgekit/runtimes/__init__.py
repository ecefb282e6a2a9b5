"""The runtimes a model file runs in: LiteRT and ONNX Runtime on the host (host), TensorFlow Lite Micro on the
host (tflm), each supervised in a child process (child)."""
