"""The runtimes a model file runs in, each behind the Runner protocol (base): LiteRT (litert) and ONNX Runtime
(onnx) in this process, opened from a file through host.open_runner after a run in a child process;
TensorFlow Lite Micro (tflm, its child process tflm_child), always in a child process. Every child process
is supervised by child.run_child."""
