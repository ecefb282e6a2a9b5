"""Count the instructions of the four MLPerf Tiny reference architectures (rebuilt from the zoo, converted
with the real converter, int8) on every emulated Cortex-M core: total and per op kind, the emulated arena
(32-bit, CMSIS-NN) beside the host TFLite Micro runtime's, and the bit-exact output check.

    python benchmarks/emulated_counts.py [--cores Cortex-M4,Cortex-M7]   # writes benchmarks/emulated_counts.json

`benchmarks/fit_cpi.py` fits the cycles per instruction on these counts; `benchmarks/emulated_table.py`
writes the docs table from them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from calibration import reference_tflite

from edgekit.model_info import inspect_tflite
from edgekit.runtimes import emulated
from edgekit.runtimes import tflm as micro
from edgekit.toolchains.cores import CORES, core

OUT = Path(__file__).with_name("emulated_counts.json")
# The MLPerf Tiny v0.5 reference models: (zoo builder, input, classes, args), with their task names.
REFERENCES = {
    "kws ds-cnn": ("ds-cnn", (49, 10, 1), 12, ()),
    "vww mobilenet-v1-0.25": ("mobilenet-v1", (96, 96, 3), 2, (("alpha", 0.25),)),
    "ic resnet-8": ("resnet8", (32, 32, 3), 10, ()),
    "ad fc-autoencoder": ("fc-autoencoder", (640,), None, ()),
}


def count(spec: tuple, core_name: str, folder: Path) -> dict:
    """One reference model on one core: counts, arenas and the output check."""
    builder, shape, classes, args = spec
    path = folder / f"{builder}-{'x'.join(map(str, shape))}.tflite"
    if not path.is_file():
        path.write_bytes(reference_tflite(builder, shape, classes, args, "int8"))
    info = inspect_tflite(path)
    raw = np.random.default_rng(0).integers(-128, 128, info.inputs[0].shape[1:]).astype(np.dtype(info.inputs[0].dtype))
    host = micro.measure(path, sample=raw, find_min_arena=True)
    expected = np.asarray(host.output, dtype=np.dtype(info.outputs[0].dtype))
    run = emulated.checked(emulated.run_model(path, core(core_name), raw, expected), path)
    kinds: dict[str, int] = defaultdict(int)
    for op in run.per_op:
        kinds[op.op] += op.instructions
    return {"core": run.core, "board": run.board, "macs": info.macs, "instructions": run.instructions,
            "instructions_by_op": dict(kinds),
            "per_op": [{"op": op.op, "instructions": op.instructions, "kind": info.ops[op.index].kind,
                        "macs": info.ops[op.index].macs, "bytes": info.ops[op.index].bytes} for op in run.per_op],
            "arena_emulated_bytes": run.arena_bytes, "arena_host_bytes": host.arena_bytes,
            "arena_host_min_bytes": host.arena_min_bytes, "output_matches": run.output_matches,
            "wall_s": round(run.wall_s, 2), "qemu": run.qemu, "compiler": run.compiler, "sources": run.sources}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default=",".join(CORES))
    args = parser.parse_args(argv)
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for core_name in args.cores.split(","):
            for name, spec in REFERENCES.items():
                started = time.perf_counter()
                results.setdefault(name, {})[core_name] = count(spec, core_name, Path(scratch))
                print(f"{name} on {core_name}: {results[name][core_name]['instructions']:,} instructions "
                      f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
                OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
