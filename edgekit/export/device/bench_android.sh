#!/bin/sh
# Benchmark MODEL on an Android phone over adb with TensorFlow Lite's benchmark_model, and keep the log
# for `edgekit compare BUILD_DIR benchmark_model.log`. Written by edgekit into phone bundles.
#
#   ./bench_android.sh MODEL.tflite [THREADS] [extra benchmark_model flags...]
#
# Environment: BENCHMARK_MODEL (default ./benchmark_model: the android_aarch64 binary, see README.md),
# RUNS (default 200), WARMUP (default 20), LOG (default benchmark_model.log), ANDROID_SERIAL (which phone).
set -eu

MODEL=${1:?usage: ./bench_android.sh MODEL.tflite [THREADS] [extra benchmark_model flags...]}
THREADS=${2:-4}
[ $# -ge 2 ] && shift 2 || shift $#
BENCHMARK_MODEL=${BENCHMARK_MODEL:-./benchmark_model}
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-20}
LOG=${LOG:-benchmark_model.log}
REMOTE=/data/local/tmp/edgekit

command -v adb >/dev/null 2>&1 || { echo "error: adb not found (Android SDK platform-tools)" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "error: model file '$MODEL' does not exist" >&2; exit 2; }
[ -f "$BENCHMARK_MODEL" ] || { echo "error: '$BENCHMARK_MODEL' does not exist; download benchmark_model as README.md says, or set BENCHMARK_MODEL" >&2; exit 2; }

adb shell mkdir -p "$REMOTE"
adb push "$BENCHMARK_MODEL" "$REMOTE/benchmark_model" >/dev/null
adb shell chmod 755 "$REMOTE/benchmark_model"
adb push "$MODEL" "$REMOTE/" >/dev/null
NAME=$(basename "$MODEL")

{
  # Lines edgekit compare reads for the device; benchmark_model's own lines follow.
  echo "edgekit: device=$(adb shell getprop ro.product.manufacturer | tr -d '\r') $(adb shell getprop ro.product.model | tr -d '\r')"
  echo "edgekit: soc=$(adb shell getprop ro.soc.model | tr -d '\r') $(adb shell getprop ro.board.platform | tr -d '\r')"
  echo "edgekit: android=$(adb shell getprop ro.build.version.release | tr -d '\r')"
  echo "edgekit: abi=$(adb shell getprop ro.product.cpu.abi | tr -d '\r')"
  echo "edgekit: threads=$THREADS runs=$RUNS warmup=$WARMUP"
  adb shell "$REMOTE/benchmark_model" --graph="$REMOTE/$NAME" --num_threads="$THREADS" \
    --warmup_runs="$WARMUP" --num_runs="$RUNS" "$@" 2>&1 | tr -d '\r'
} | tee "$LOG"
echo "log: $LOG (edgekit compare BUILD_DIR $LOG)" >&2
