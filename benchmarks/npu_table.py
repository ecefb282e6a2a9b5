"""Compile the four MLPerf Tiny reference architectures (rebuilt from the zoo, converted with the real converter, int8,
random weights at reference size) with Vela for every built-in profile that has an Ethos-U NPU, and write Vela's
figures: NPU cycles and time at the profile's NPU clock, SRAM, DRAM and flash used, operators on the NPU.

    python benchmarks/npu_table.py            # writes benchmarks/npu_table.json and docs/npu.md

Every figure is Vela's performance estimate (its performance model), not a measurement.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from calibration import reference_tflite
from emulated_counts import REFERENCES

from edgekit import npu, targets
from edgekit.model_info import inspect_tflite

OUT = Path(__file__).with_name("npu_table.json")
DOC = Path(__file__).resolve().parents[1] / "docs" / "npu.md"


def run(folder: Path) -> dict:
    rows = []
    npu_targets = [t for t in targets.load_all() if t.npu is not None]
    for task, (builder, shape, classes, args) in REFERENCES.items():
        path = folder / f"{builder}.tflite"
        path.write_bytes(reference_tflite(builder, shape, classes, args, "int8"))
        info = inspect_tflite(path)
        for target in npu_targets:
            assert target.npu is not None
            result = npu.compile_model(path, target.npu)
            on_cpu = {op.index for op in result.cpu_ops}
            rows.append({"model": task, "target": target.name, "accelerator": result.accelerator,
                         "system_config": result.system_config, "memory_mode": result.memory_mode,
                         "clock_mhz": result.clock_mhz, "cycles_npu": result.cycles_npu,
                         "cycles_total": result.cycles_total, "npu_ms": result.npu_ms, "sram_bytes": result.sram_bytes,
                         "dram_bytes": result.dram_bytes, "flash_bytes": result.flash_bytes,
                         "model_bytes": result.model_bytes, "source_ops": len(info.ops),
                         "source_ops_on_npu": len(info.ops) - len(on_cpu), "npu_operations": result.npu_ops,
                         "cpu_ops": [{"op": op.op, "name": op.name, "reason": op.reason} for op in result.cpu_ops],
                         "macs": info.macs})
            print(f"{task} on {target.name}: {result.cycles_total:,} cycles, {result.npu_ms:.3f} ms, SRAM "
                  f"{result.sram_bytes / 1024:.1f} KiB, flash {result.flash_bytes / 1024:.1f} KiB", file=sys.stderr)
    return {"vela_version": npu.vela_version(), "rows": rows,
            "note": "Vela's performance estimate (its performance model), not a measurement; reference "
                    "architectures with random weights at reference size"}


def markdown(data: dict) -> str:
    lines = [
        "# Ethos-U NPU targets: Vela's figures for the MLPerf Tiny reference models", "",
        "Written by `benchmarks/npu_table.py` (do not edit by hand). Each MLPerf Tiny v0.5 reference architecture "
        "is rebuilt from edgekit's zoo at reference size, converted to int8 by the real converter (random weights: "
        "Vela's figures depend on the shapes, not the values) and compiled by Arm's Vela "
        f"(ethos-u-vela {data['vela_version']}) for each built-in profile with an `[npu]` table, with the profile's "
        "accelerator, Vela system configuration (at the profile's NPU clock) and memory mode.", "",
        "**Every figure here is Vela's performance estimate** (its performance model of the NPU and the memories of "
        "the chosen system configuration), not a measurement on a board. Cycles are Vela's `cycles_total` (compute "
        "plus the memory accesses it waits for); time is those cycles at the profile's NPU clock. SRAM, DRAM and flash "
        "are what Vela allocates for the compiled model; ops on NPU counts the operators of the source file that Vela "
        "maps to the NPU.", "",
        "| model | target | NPU | cycles | ms | SRAM KiB | DRAM KiB | flash KiB | ops on NPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        lines.append(f"| {row['model']} | {row['target']} | {row['accelerator']} at {row['clock_mhz']:g} MHz, "
                     f"{row['memory_mode']} | {row['cycles_total']:,} | {row['npu_ms']:.3f} | "
                     f"{row['sram_bytes'] / 1024:.1f} | {row['dram_bytes'] / 1024:.1f} | "
                     f"{row['flash_bytes'] / 1024:.1f} | {row['source_ops_on_npu']} of {row['source_ops']} |")
    cpu = [(row, op) for row in data["rows"] for op in row["cpu_ops"]]
    lines += ["", "Operators Vela leaves on the CPU: " + ("none." if not cpu else "")]
    lines += [f"- {row['model']} on {row['target']}: {op['op']} `{op['name']}`: {op['reason']}" for row, op in cpu]
    lines += ["", "How edgekit uses these figures in `edgekit bench` and `edgekit build` (the target latency is the "
              "NPU estimate plus the CPU-fallback operators counted on the emulated CPU, both shown) and what a "
              "microcontroller bundle for an Ethos-U carries (the Vela model, the Ethos-U operator and driver) is in "
              "[targets/README.md](../targets/README.md#npu-arm-ethos-u-npus-compiled-with-vela).", ""]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="npu-table-") as folder:
        data = run(Path(folder))
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    DOC.write_text(markdown(data))
    print(f"wrote {OUT} and {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
