"""Bundles for phones and single-board computers: the model, what it expects, a stored test input with the
output the build machine got for it, and the script that measures it on the device. (Microcontroller
bundles are `edgekit.export.export_mcu`.) `edgekit compare` reads the device's answer back."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._files import sha256, write_atomic
from edgekit.errors import UsageError
from edgekit.feeds import FeedPlan, InputSpec

DEVICE_DIR = Path(__file__).with_name("device")
BENCHMARK_MODEL_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
                       "tools/nightly/latest/android_aarch64_benchmark_model")
BENCHMARK_MODEL_DOCS = "https://ai.google.dev/edge/litert/models/measurement"
REQUIREMENTS = "numpy\nai-edge-litert\n"
REMOTE = "/data/local/tmp/edgekit"  # where bench_android.sh pushes the model on the phone
SEED = 0


def export_bundle(model: Path, target, out: Path, labels: Path | None = None, sample=None,
                  trusted_sha256: str | None = None, inputs: Sequence[InputSpec] = ()) -> dict[str, Any]:
    """Write the bundle for a phone or single-board-computer `target` into `out`; returns model.json's
    content plus the list of files written. `sample` is one float input (a test-set sample) stored as the
    test input; without it, a seeded random one. `trusted_sha256`: as in runtimes.host.open_runner.

    A model of several inputs (or `inputs` given, as `edgekit bench --input` takes them) stores every input's
    value in test_inputs.npz, by tensor name, and the device script carries its recurrent state as `bench`
    does (`run.sh` passes the pairs); model.json records what each input is fed, and the `--input` given, so
    that `edgekit compare` benchmarks the bundle's model again the same way."""
    from edgekit.model_info import inspect_model
    from edgekit.validate import check_model_file

    model, out = Path(model), Path(out)
    fmt = check_model_file(model)
    if fmt != "tflite":
        raise UsageError(f"{model}: {target.device_class.noun}'s bundle runs LiteRT, which loads .tflite files, "
                         f"not {fmt}")
    info = inspect_model(model)
    if labels is not None and not Path(labels).is_file():
        raise UsageError(f"labels file '{labels}' does not exist")
    plan, expected = reference_feeds(model, sample, trusted_sha256, inputs)
    sample = plan.values[plan.primary]
    several = len(plan.feeds) > 1
    test_file = "test_inputs.npz" if several else "test_input.npy"
    threads = target.latency.threads if target.latency else min(4, target.cpu.cores)
    description = {
        "model": model.name, "sha256": sha256(model), "bytes": info.size_bytes, "target": target.name,
        "inputs": [asdict(t) for t in info.inputs], "outputs": [asdict(t) for t in info.outputs],
        "preprocessing": preprocessing(info),
        "test_input": {"file": test_file, "dtype": str(sample.dtype), "shape": list(sample.shape),
                       "source": ("the given sample" if plan.feeds[0].source == "data" else
                                  f"seeded random values (numpy seed {SEED}) in the input's range" if
                                  plan.feeds[0].source == "zeros" else plan.feeds[0].source) +
                                 ", in the dtype the model takes; expected_output.npy is output 0 as LiteRT gave "
                                 "it on the build machine" + (" (the other inputs as in feeds)" if several else "")},
        "feeds": plan.to_dict(), "inputs_given": [spec.text for spec in inputs],
        "threads": threads,
    }
    stored = _npz({f.name: plan.values[f.name] for f in plan.feeds}) if several else _npy(sample)
    files: dict[str, bytes | str] = {model.name: model.read_bytes(), test_file: stored,
                                     "expected_output.npy": _npy(expected)}
    if labels is not None:
        files["labels.txt"] = Path(labels).read_bytes()
    if target.device_class.value == "phone":
        files["bench_android.sh"] = (DEVICE_DIR / "bench_android.sh").read_text()
        files["README.md"] = _phone_readme(model.name, target, threads, labels is not None) + (
            _phone_inputs(plan, model.name, threads) if several else "")
        if several:
            files.update({f"inputs/{k}.bin": plan.values[f.name].tobytes() for k, f in enumerate(plan.feeds)})
    else:
        files["bench_on_device.py"] = (DEVICE_DIR / "bench_on_device.py").read_text()
        files["requirements.txt"] = REQUIREMENTS
        files["run.sh"] = _run_sh(model.name, threads, test_file, plan.state)
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
    plan, expected = reference_feeds(model, given, trusted_sha256)
    return plan.values[plan.primary], expected


def reference_feeds(model: Path, given=None, trusted_sha256: str | None = None,
                    inputs: Sequence[InputSpec] = ()) -> tuple[FeedPlan, np.ndarray]:
    """Every input's value (`edgekit.feeds.plan`, with `inputs`; the data's input: `given`, a float sample
    quantized as the model's input says, else seeded random unless `inputs` set it) and output 0 as the
    runtime gives it for them on this machine, from the first call (a recurrent state at its fed value)."""
    from dataclasses import replace

    from edgekit import feeds
    from edgekit.runtimes.host import open_runner

    plan = feeds.plan(model, inputs)
    # checked and run once in a child first (the file may come from anywhere), unless it is a build's own
    runner = open_runner(model, trusted_sha256=trusted_sha256, plan=plan)
    rng = np.random.default_rng(SEED)
    shape, dtype = plan.feeds[0].shape, np.dtype(plan.feeds[0].dtype)
    if given is not None:
        sample = runner.quantize_input(np.asarray(given, np.float32).reshape(shape))
    elif plan.feeds[0].source != "zeros":  # set by --input
        sample = plan.values[plan.primary]
    elif np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        sample = rng.integers(limits.min, limits.max, size=shape, endpoint=True).astype(dtype)
    else:
        sample = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    source = "data" if given is not None else plan.feeds[0].source
    plan = replace(plan, values={**plan.values, plan.primary: sample},
                   feeds=(replace(plan.feeds[0], source=source), *plan.feeds[1:]))
    plan = feeds.confirm(plan, runner.outputs)
    return plan, next(iter(runner.outputs(plan.values).values()))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def preprocessing(info) -> str:
    """What model.json tells the device code to do to an input before it reaches the model."""
    tensor = info.inputs[0]
    if tensor.dtype in ("int8", "uint8", "int16") and tensor.scale:
        return (f"the model takes {tensor.dtype}: quantize the float input the model was trained on as "
                f"q = round(x / {tensor.scale[0]:g}) + {tensor.zero_point[0]}, clipped to the {tensor.dtype} range; "
                f"dequantize outputs as (q - zero_point) * scale with the figures in 'outputs'")
    return f"the model takes {tensor.dtype} values scaled as in training (edgekit's built-in datasets: 0 to 1)"


def _run_sh(model_name: str, threads: int, test_file: str = "test_input.npy",
            state: Sequence[tuple[str, str]] = ()) -> str:
    carried = "".join(f" --state '{i}={o}'" for i, o in state)
    return ("#!/bin/sh\n# Measure the model on this device and check its output; writes result.json.\n"
            "# Extra arguments go to bench_on_device.py (for example --threads 1).\nset -eu\n"
            'cd "$(dirname "$0")"\n'
            f"python3 bench_on_device.py --model {model_name} --threads {threads} --runs 200 --warmup 20 \\\n"
            f'  --input {test_file} --expected expected_output.npy --out result.json{carried} "$@"\n')


def _phone_inputs(plan: FeedPlan, model_name: str, threads: int) -> str:
    """The README's part for a model of several inputs: the benchmark_model flags that feed them."""
    names = ",".join(f.name for f in plan.feeds)
    shapes = ":".join(",".join(str(d) for d in f.shape) for f in plan.feeds)
    files = ",".join(f"{f.name.replace(':', '::')}:{REMOTE}/inputs/{k}.bin" for k, f in enumerate(plan.feeds))
    listed = "\n".join(f"- `{f.name}` {list(f.shape)} {f.dtype}: {f.source} (`inputs/{k}.bin`)"
                        for k, f in enumerate(plan.feeds))
    return f"""
## The model's inputs

{listed}

`benchmark_model` fills inputs with random values unless told; to feed these instead, push `inputs/` to
`{REMOTE}/` and add the flags (edgekit has not run them on a phone; a scalar input's shape is the
empty entry):

```sh
adb push inputs {REMOTE}/
./bench_android.sh {model_name} {threads} --input_layer='{names}' \\
  --input_layer_shape='{shapes}' --input_layer_value_files="{files}"
```

`benchmark_model` does not carry a recurrent state from one run to the next: it times every run from these
values, where `edgekit bench` and `bench_on_device.py` feed the state back.
"""


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
