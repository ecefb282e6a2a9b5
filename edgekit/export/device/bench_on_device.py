#!/usr/bin/env python3
"""Benchmark a .tflite model on the device this runs on, and check that it computes what it did on the
build machine. Written by edgekit into single-board-computer bundles; it needs only Python 3, numpy and
ai-edge-litert (or the older tflite-runtime), never TensorFlow:

    python3 bench_on_device.py --model model.tflite --threads 4 --runs 200 --warmup 20 \\
        --input test_input.npy --expected expected_output.npy --out result.json

A model of several inputs takes them from an .npz (`--input test_inputs.npz`, one array per input tensor
name), and `--state IN=OUT` (repeatable) feeds output OUT back into input IN after every timed run, so that a
recurrent model is timed in steady state, as `edgekit bench` times it.

Exit status: 0 done, 1 the stored input did not give the stored output (nothing is written), 2 bad arguments.
Read the result back with `edgekit compare BUILD_DIR result.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import time

import numpy as np

SCHEMA = "edgekit-device-result/1"
FLOAT_ATOL = 1e-4  # the build machine's XNNPACK and this device's may order float sums differently
FLOAT_RTOL = 1e-3


def load_runtime():
    """(Interpreter class, runtime name, version): ai-edge-litert first, then tflite-runtime."""
    from importlib import metadata

    try:
        from ai_edge_litert.interpreter import Interpreter

        name = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter

            name = "tflite-runtime"
        except ImportError:
            sys.exit("error: neither ai_edge_litert nor tflite_runtime is installed; "
                     "run `python3 -m pip install -r requirements.txt`")
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = None
    return Interpreter, name, version


def peak_rss_bytes() -> int:
    """The process's peak resident set: VmHWM on Linux, ru_maxrss elsewhere (bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak() -> None:
    """Start the high-water mark again from the current resident set (Linux 4.0+), so the imports do not
    set it; elsewhere the peak keeps what came before and the rise below is smaller than it should be."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def device() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        # 'model name' on x86 and some Arm kernels; 'Model' names the board on a Raspberry Pi.
        for key in ("model name", "Hardware", "Model"):
            found = [line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == key]
            if found:
                cpu = found[0]
                break
        board = [line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == "Model"]
    except OSError:
        board = []
    return {"cpu": cpu, "board": board[0] if board else None, "machine": platform.machine(),
            "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def check_output(output: np.ndarray, expected: np.ndarray) -> dict:
    """Integer outputs must match exactly; float outputs within a tolerance."""
    if output.shape != expected.shape or output.dtype != expected.dtype:
        return {"ok": False, "detail": f"output is {output.dtype} {list(output.shape)}, expected "
                                       f"{expected.dtype} {list(expected.shape)}"}
    difference = np.abs(output.astype(np.float64) - expected.astype(np.float64))
    largest = float(difference.max()) if difference.size else 0.0
    if np.issubdtype(expected.dtype, np.integer):
        return {"ok": largest == 0, "max_abs_difference": largest, "rule": "exact (integer output)"}
    ok = bool(np.all(difference <= FLOAT_ATOL + FLOAT_RTOL * np.abs(expected.astype(np.float64))))
    return {"ok": ok, "max_abs_difference": largest, "rule": f"|out - expected| <= {FLOAT_ATOL:g} + "
                                                            f"{FLOAT_RTOL:g} x |expected| (float output)"}


def stats(samples_ns: np.ndarray) -> dict:
    ms = samples_ns / 1e6
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "min": float(ms.min()),
            "max": float(ms.max()), "std": float(ms.std())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the .tflite file")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    parser.add_argument("--input", default="test_input.npy",
                        help="stored input, in the model's own dtype (.npz: one array per input tensor name)")
    parser.add_argument("--state", action="append", default=[], metavar="IN=OUT",
                        help="feed output tensor OUT back into input tensor IN after every run (repeatable)")
    parser.add_argument("--expected", default="expected_output.npy", help="the output the build machine got")
    parser.add_argument("--out", default="result.json", help="where to write the JSON result")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--runs and --threads must be >= 1, --warmup >= 0")

    interpreter_class, runtime, version = load_runtime()
    if args.input.endswith(".npz"):
        with np.load(args.input, allow_pickle=False) as stored:
            given = {name: stored[name] for name in stored.files}
    else:
        given = {None: np.load(args.input, allow_pickle=False)}  # the first input
    expected = np.load(args.expected)
    with open(args.model, "rb") as model_file:
        content = model_file.read()

    reset_peak()
    before = peak_rss_bytes()
    started = time.perf_counter_ns()
    interpreter = interpreter_class(model_path=args.model, num_threads=args.threads)
    details = interpreter.get_input_details()
    by_name = {d["name"]: d for d in details}
    unknown = sorted(str(name) for name in given if name is not None and name not in by_name)
    if unknown:
        print(f"error: {args.input} holds {', '.join(unknown)}, which {args.model} has no input named; its inputs: "
              f"{', '.join(by_name)}", file=sys.stderr)
        return 1
    feeds = {(details[0]["name"] if name is None else name): value for name, value in given.items()}
    for name, value in feeds.items():  # a dynamic dimension takes the stored size
        if tuple(by_name[name]["shape"]) != tuple(value.shape):
            interpreter.resize_tensor_input(by_name[name]["index"], list(value.shape))
    interpreter.allocate_tensors()
    init_ms = (time.perf_counter_ns() - started) / 1e6
    details = interpreter.get_input_details()
    output_detail = interpreter.get_output_details()[0]
    for detail in details:
        sample = feeds.get(detail["name"])
        if sample is not None and (sample.dtype != detail["dtype"] or tuple(sample.shape) != tuple(detail["shape"])):
            print(f"error: {args.input} is {sample.dtype} {list(sample.shape)} for {detail['name']}; the model "
                  f"takes {np.dtype(detail['dtype'])} {list(detail['shape'])}", file=sys.stderr)
            return 1
        if sample is not None:
            interpreter.set_tensor(detail["index"], sample)
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    try:
        carried = [(by_name[pair.split("=", 1)[0]]["index"], outputs[pair.split("=", 1)[1]]) for pair in args.state]
    except (KeyError, IndexError):
        parser.error(f"--state takes IN=OUT, an input and an output tensor of {args.model}: {args.state}")
    started = time.perf_counter_ns()
    interpreter.invoke()
    first_ms = (time.perf_counter_ns() - started) / 1e6
    check = check_output(interpreter.get_tensor(output_detail["index"]), expected)
    if not check["ok"]:
        print(f"error: {args.model} on this device does not give the stored output for {args.input}: "
              f"{check.get('detail') or 'largest difference ' + format(check['max_abs_difference'], 'g')} "
              f"({check.get('rule', '')}); no result written", file=sys.stderr)
        return 1

    invoke = interpreter.invoke
    if carried:
        get, put, bare = interpreter.get_tensor, interpreter.set_tensor, interpreter.invoke

        def invoke() -> None:  # steady state: the new state goes back in after every run
            bare()
            for into, out in carried:
                put(into, get(out))

    for _ in range(args.warmup):
        invoke()
    samples = np.empty(args.runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(args.runs):
        started = clock()
        invoke()
        samples[i] = clock() - started
    peak = peak_rss_bytes()

    result = {
        "schema": SCHEMA,
        "tool": "bench_on_device.py",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": os.path.basename(args.model),
        "model_sha256": hashlib.sha256(content).hexdigest(),
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
        "latency_ms": {**stats(samples), "init": init_ms, "first": first_ms, "where": "device",
                       "note": "batch 1, interpreter.invoke() only; warm-up runs discarded" + (
                           "; steady state: " + ", ".join(args.state) + " fed back after every run" if carried
                           else "")},
        "memory": {"peak_rss_bytes": peak, "rss_rise_bytes": max(0, peak - before),
                   "method": "rise of the process's peak resident set (VmHWM, else ru_maxrss) from just before "
                             "the interpreter was created to the end of the timed runs"},
        "check": check,
        "device": device(),
        "runtime": {"name": runtime, "version": version},
    }
    with open(args.out + ".partial", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(args.out + ".partial", args.out)
    latency = result["latency_ms"]
    threads = f"{args.threads} thread" + ("" if args.threads == 1 else "s")
    print(f"{result['model']}: {latency['median']:.3f} ms median, {latency['p90']:.3f} p90, "
          f"{latency['p99']:.3f} p99 over {args.runs} runs ({threads}, {runtime} {version}); "
          f"peak memory rise {result['memory']['rss_rise_bytes'] / 2**20:.1f} MiB; output check ok -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
