"""What it takes to run a model on an emulated core: the pinned third-party sources (`sources`), the cross
compiler and QEMU found or explained (`tools`), the cores edgekit knows how to build for and emulate
(`cores`), and the TensorFlow Lite Micro library built once per core and cached (`tflm_library`)."""
