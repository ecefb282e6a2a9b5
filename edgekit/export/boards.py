"""Bundles for phones and single-board computers: the model, what it expects, a stored test input with the
output the build machine got for it, and the script that measures it on the device. (Microcontroller
bundles are `edgekit.export.export_mcu`.) `edgekit compare` reads the device's answer back."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import sha256, write_atomic
from edgekit.errors import UsageError

DEVICE_DIR = Path(__file__).with_name("device")
BENCHMARK_MODEL_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
                       "tools/nightly/latest/android_aarch64_benchmark_model")
BENCHMARK_MODEL_DOCS = "https://ai.google.dev/edge/litert/models/measurement"
REQUIREMENTS = "numpy\nai-edge-litert\n"
SEED = 0


def export_bundle(model: Path, target, out: Path, labels: Path | None = None, sample=None,
                  trusted_sha256: str | None = None) -> dict[str, Any]:
    """Write the bundle for a phone or single-board-computer `target` into `out`; returns model.json's
    content plus the list of files written. `sample` is one float input (a test-set sample) stored as the
    test input; without it, a seeded random one. `trusted_sha256`: as in runtimes.host.open_runner."""
    from edgekit.model_info import inspect_model
    from edgekit.validate import check_model_file

    model, out = Path(model), Path(out)
    fmt = check_model_file(model)
    if fmt != "tflite":
        raise UsageError(f"{model}: a {target.device_class.value} bundle runs LiteRT, which loads .tflite files, "
                         f"not {fmt}")
    info = inspect_model(model)
    if labels is not None and not Path(labels).is_file():
        raise UsageError(f"labels file '{labels}' does not exist")
    sample, expected = reference_pair(model, sample, trusted_sha256)
    threads = target.latency.threads if target.latency else min(4, target.cpu.cores)
    description = {
        "model": model.name, "sha256": sha256(model), "bytes": info.size_bytes, "target": target.name,
        "inputs": [asdict(t) for t in info.inputs], "outputs": [asdict(t) for t in info.outputs],
        "preprocessing": preprocessing(info),
        "test_input": {"file": "test_input.npy", "dtype": str(sample.dtype), "shape": list(sample.shape),
                       "source": f"seeded random values (numpy seed {SEED}) in the input's range, in the dtype the "
                                 "model takes; expected_output.npy is what LiteRT gave for it on the build "
                                 "machine"},
        "threads": threads,
    }
    files: dict[str, bytes | str] = {model.name: model.read_bytes(), "test_input.npy": _npy(sample),
                                     "expected_output.npy": _npy(expected)}
    if labels is not None:
        files["labels.txt"] = Path(labels).read_bytes()
    if target.device_class.value == "phone":
        files["bench_android.sh"] = (DEVICE_DIR / "bench_android.sh").read_text()
        files["README.md"] = _phone_readme(model.name, target, threads, labels is not None)
    else:
        files["bench_on_device.py"] = (DEVICE_DIR / "bench_on_device.py").read_text()
        files["requirements.txt"] = REQUIREMENTS
        files["run.sh"] = _run_sh(model.name, threads)
        files["README.md"] = _sbc_readme(model.name, target, threads, labels is not None)
    files["model.json"] = json.dumps(description, indent=2) + "\n"
    for name, content in files.items():
        path = write_atomic(out / name, content)
        if name.endswith((".sh", ".py")) and name != model.name:
            path.chmod(path.stat().st_mode | 0o111)
    return {**description, "files": sorted(files)}


def reference_pair(model: Path, given=None, trusted_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A batch-1 input in the model's own dtype (`given`, a float sample, quantized as the model's input
    says; else seeded random) and the raw output LiteRT gives for it on this machine."""
    from edgekit.runtimes.host import open_runner

    # checked and run once in a child first (the file may come from anywhere), unless it is a build's own
    runner = open_runner(model, trusted_sha256=trusted_sha256)
    rng = np.random.default_rng(SEED)
    shape = runner.input_shape
    dtype = runner.input_dtype
    if given is not None:
        sample = runner.quantize_input(np.asarray(given, np.float32).reshape(1, *shape))
    elif np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        sample = rng.integers(limits.min, limits.max, size=(1, *shape), endpoint=True).astype(dtype)
    else:
        sample = rng.uniform(0.0, 1.0, size=(1, *shape)).astype(dtype)
    return sample, runner.run_raw(sample)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def preprocessing(info) -> str:
    """What model.json tells the device code to do to an input before it reaches the model."""
    tensor = info.inputs[0]
    if tensor.dtype in ("int8", "uint8", "int16") and tensor.scale:
        return (f"the model takes {tensor.dtype}: quantize the float input the model was trained on as "
                f"q = round(x / {tensor.scale[0]:g}) + {tensor.zero_point[0]}, clipped to the {tensor.dtype} range; "
                f"dequantize outputs as (q - zero_point) * scale with the figures in 'outputs'")
    return f"the model takes {tensor.dtype} values scaled as in training (edgekit's built-in datasets: 0 to 1)"


def _run_sh(model_name: str, threads: int) -> str:
    return ("#!/bin/sh\n# Measure the model on this device and check its output; writes result.json.\n"
            "# Extra arguments go to bench_on_device.py (for example --threads 1).\nset -eu\n"
            'cd "$(dirname "$0")"\n'
            f"python3 bench_on_device.py --model {model_name} --threads {threads} --runs 200 --warmup 20 \\\n"
            '  --input test_input.npy --expected expected_output.npy --out result.json "$@"\n')


def _sbc_readme(model_name: str, target, threads: int, labels: bool) -> str:
    return f"""# {model_name} for {target.title}

Copy this folder to the device, then:

```sh
python3 -m pip install -r requirements.txt   # numpy and ai-edge-litert (tflite-runtime works too)
./run.sh                                     # = python3 bench_on_device.py --model {model_name} --threads {threads} ...
```

`bench_on_device.py` imports only the standard library, numpy and LiteRT (never TensorFlow). It first checks
that `test_input.npy` gives `expected_output.npy` (exactly for integer outputs, within a tolerance for float;
a mismatch exits 1 and writes nothing), then times 200 runs of `invoke()` after 20 discarded warm-up runs and
writes `result.json`: median / p90 / p99 / mean latency, the peak memory, the device's CPU and OS, the runtime
and its version. Bring `result.json` back and run

```sh
edgekit compare BUILD_DIR result.json                      # estimate vs measured
edgekit compare BUILD_DIR result.json --calibrate my.toml  # a copy of the target profile fitted to it
```

Files: `{model_name}` (the model), `model.json` (input and output names, shapes, types, scale and zero point,
preprocessing, sha256){", `labels.txt` (class names, one a line)" if labels else ""}, `test_input.npy`,
`expected_output.npy`, `bench_on_device.py`, `requirements.txt`, `run.sh`.
"""


def _phone_readme(model_name: str, target, threads: int, labels: bool) -> str:
    return f"""# {model_name} for {target.title}

Ship `{model_name}` in the app (LiteRT, `{threads}` threads is what edgekit's estimate assumes). To measure it on
the phone, with USB debugging on and `adb` (Android SDK platform-tools) on the PATH:

1. Get TensorFlow Lite's `benchmark_model` for 64-bit Arm Android: the prebuilt nightly binary
   `android_aarch64_benchmark_model` linked from the LiteRT performance measurement page
   ({BENCHMARK_MODEL_DOCS}):

   ```sh
   curl -L -o benchmark_model {BENCHMARK_MODEL_URL}
   ```

2. Run it:

   ```sh
   ./bench_android.sh {model_name} {threads}      # pushes both to /data/local/tmp/edgekit, keeps benchmark_model.log
   ```

   Extra arguments go to `benchmark_model` (for example `--use_gpu=true`); `RUNS` and `WARMUP` set the run
   counts.

3. Bring `benchmark_model.log` back and run

   ```sh
   edgekit compare BUILD_DIR benchmark_model.log                      # estimate vs measured
   edgekit compare BUILD_DIR benchmark_model.log --calibrate my.toml  # a copy of the profile fitted to it
   ```

Files: `{model_name}` (the model), `model.json` (input and output names, shapes, types, scale and zero point,
preprocessing, sha256){", `labels.txt` (class names, one a line)" if labels else ""}, `test_input.npy` and
`expected_output.npy` (an input and the output the build machine got, for the app's own test), `bench_android.sh`.
"""
