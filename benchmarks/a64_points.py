"""The published Cortex-A points of ../calibration (see `benchmarks/fit_cpi_a64.py`), counted: each point's model
in the real LiteRT runtime (aarch64 wheel, XNNPACK, one thread) on the emulated core of the point's class, one
invoke after warm-up, with the instructions split by symbol into XNNPACK's microkernels (which pthreadpool
spreads over the threads) and the rest (the interpreter, the delegate's glue, Python: one thread).

The models are the ones the points name, rebuilt here with random weights (the published runs used random
weights too): MobileNet v1 1.0 224 from edgekit's zoo, MobileNet v2 1.0 224 and v3 Large/Small 224 from
tf-keras' applications (weights=None, no preprocessing layer), float32 and int8 (per-channel, as XNNPACK's
end2end-bench). Counting takes about 10 minutes on one core.

    python benchmarks/a64_points.py      # writes benchmarks/a64_points.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit._files import captured_stderr_fd
from edgekit.convert import int8_converter
from edgekit.cycles_a64 import parallelized_ops, split_instructions
from edgekit.model_info import inspect_tflite
from edgekit.runtimes.emulated_a64 import run_litert

HERE = Path(__file__).resolve().parent
OUT = HERE / "a64_points.json"
# model label: the cores whose points (or thread pairs) need it counted
COUNTS = {
    ("mobilenet-v1", "float32"): ("cortex-a53", "cortex-a72", "cortex-a76"),
    ("mobilenet-v2", "float32"): ("cortex-a53", "cortex-a72"),
    ("mobilenet-v3-large", "float32"): ("cortex-a53", "cortex-a72"),
    ("mobilenet-v3-small", "float32"): ("cortex-a53", "cortex-a72"),
    ("mobilenet-v1", "int8"): ("cortex-a53", "cortex-a72", "cortex-a76"),
    ("mobilenet-v2", "int8"): ("cortex-a53", "cortex-a72"),
}


def keras_model(name: str):
    from edgekit._tf import keras
    from edgekit.zoo import build_model

    if name == "mobilenet-v1":
        return build_model("mobilenet-v1", (224, 224, 3), 1000, {"alpha": 1.0})
    applications = keras.applications
    if name == "mobilenet-v2":
        return applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000)
    kind = {"mobilenet-v3-large": applications.MobileNetV3Large, "mobilenet-v3-small": applications.MobileNetV3Small}
    return kind[name](input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000, include_preprocessing=False)


def tflite(name: str, precision: str) -> bytes:
    from edgekit._tf import tf

    model = keras_model(name)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # plausible random weights: batch-norm variances and scales near 1
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if "variance" in v.name or "gamma" in v.name
                           else (rng.standard_normal(w.shape) * 0.05).astype(w.dtype)
                           for w, v in zip(layer.get_weights(), layer.weights, strict=True)])
    converter = int8_converter(model, rng.uniform(0, 1, (4, 224, 224, 3)).astype(np.float32)) \
        if precision == "int8" else tf.lite.TFLiteConverter.from_keras_model(model)
    with captured_stderr_fd():
        return converter.convert()


def main() -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() and "--fresh" not in sys.argv else {}
    with tempfile.TemporaryDirectory() as scratch:
        for (name, precision), cores in COUNTS.items():
            label = f"{name} {precision}"
            entry = results.setdefault(label, {"cores": {}})
            if all(core in entry["cores"] for core in cores):
                continue
            path = Path(scratch) / f"{name}-{precision}.tflite"
            path.write_bytes(tflite(name, precision))
            info = inspect_tflite(path)
            entry.update(macs=info.macs, ops=len(info.ops), op_types=sorted({op.op for op in info.ops}))
            dtype = np.dtype(info.inputs[0].dtype)
            raw = np.random.default_rng(0).uniform(0, 1, info.inputs[0].shape).astype(dtype) if dtype.kind == "f" \
                else np.random.default_rng(0).integers(-128, 128, info.inputs[0].shape).astype(dtype)
            for core in cores:
                if core in entry["cores"]:
                    continue
                run = run_litert(path, core, raw, symbols=True)
                parallel, serial = split_instructions(run.per_symbol, run.instructions)
                entry["cores"][core] = {"instructions": run.instructions, "parallel": parallel, "serial": serial,
                                        "parallelized_ops": parallelized_ops(run.per_symbol),
                                        "wall_s": run.wall_s, "kernels": [
                                            [s.symbol, s.instructions] for s in run.per_symbol[:8]]}
                entry.update(qemu=run.qemu, versions=run.versions)
                print(f"{label} on {core}: {run.instructions:,} instructions, {serial:,} serial ({run.wall_s:.0f} s)",
                      file=sys.stderr)
                OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
