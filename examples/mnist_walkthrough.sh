#!/usr/bin/env bash
# The classic Keras MNIST walk-through (see mnist_walkthrough.py) with edgekit's command line: train the
# tutorial's Dense-128 network as it does (Adam, 2 epochs, batch 32), prune it to 50% sparsity, quantize it
# to int8, verify and benchmark every file for a Raspberry Pi 4, then ask whether the int8 file fits a
# microcontroller too.
#
#   examples/mnist_walkthrough.sh                  # builtin:mnist; about a minute on two cores
#   examples/mnist_walkthrough.sh mnist.npz        # an MNIST-format .npz (x_train, y_train, x_test, y_test) or .csv
#   examples/mnist_walkthrough.sh mnist.npz out    # build folders under out/ instead of build/
#
# builtin:mnist is downloaded once into Keras's cache (~/.keras/datasets/mnist.npz, 11 MB). Without network
# access and without that file, `edgekit build` stops with a one-line error saying where to put it (exit 2).
set -euo pipefail

data="${1:-builtin:mnist}"
out="${2:-build}"

# The recipe mnist-mlp (models/mnist-mlp.toml; `edgekit models` lists it) holds the tutorial's model and
# training settings plus the pruning and int8 settings. Load, normalise (/255), train, evaluate, then prune,
# int8 QAT, convert, verify and bench: one table of float32.tflite, int8.tflite and model.onnx with size,
# sparsity, test accuracy and host latency.
edgekit build --recipe mnist-mlp --target rpi4 --data "$data" --out "$out"

# Does the int8 file fit a microcontroller? Accuracy on the same test images, the arena from the TFLite
# Micro runtime, the flash, and a latency estimate, each against the board's budget. Exit 3 on a miss.
edgekit bench "$out/mnist-mlp-rpi4/int8.tflite" --target nucleo-l4r5zi --data "$data"
