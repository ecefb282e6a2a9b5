"""Write the table of docs/emulation.md from benchmarks/emulated_counts.json and edgekit/toolchains/cpi.json:
the four MLPerf Tiny reference architectures on every emulated core (instructions by op kind and in total,
the arena on the 32-bit core beside the host runtime's, the output check), then the milliseconds each
built-in microcontroller profile gets (instructions x CPI / clock).

    python benchmarks/emulated_counts.py && python benchmarks/fit_cpi.py && python benchmarks/emulated_table.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekit import targets
from edgekit.cycles import core_cpi
from edgekit.runtimes.emulated import emulable_core

COUNTS = Path(__file__).with_name("emulated_counts.json")
DOC = Path(__file__).parents[1] / "docs" / "emulation.md"
BEGIN, END = "<!-- emulated_table.py: begin -->", "<!-- emulated_table.py: end -->"
KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "ADD", "SOFTMAX")


def counts_table(counts: dict) -> list[str]:
    lines = ["| model | core | " + " | ".join(KINDS) + " | other ops | total | arena 32-bit / host | output |",
             "|---|---|" + "---:|" * (len(KINDS) + 3) + "---|"]
    for model, per_core in counts.items():
        for core, run in per_core.items():
            by_op = run["instructions_by_op"]
            other = sum(n for op, n in by_op.items() if op not in KINDS)
            cells = [f"{by_op[k]:,}" if k in by_op else "-" for k in KINDS]
            host = run["arena_host_min_bytes"] or run["arena_host_bytes"]
            lines.append(f"| {model} | {core} | " + " | ".join(cells) + f" | {other:,} | {run['instructions']:,} | "
                         f"{run['arena_emulated_bytes']:,} / {host:,} B | "
                         f"{'bit-exact' if run['output_matches'] else 'DIFFERS'} |")
    return lines


def profile_table(counts: dict) -> list[str]:
    profiles = [(t, emulable_core(t)) for t in targets.load_all()]
    profiles = [(t, core) for t, core in profiles if core is not None]
    lines = ["| model | " + " | ".join(f"{t.name} ({core.name}, {t.cpu.clock_mhz:g} MHz)" for t, core in profiles)
             + " |", "|---|" + "---:|" * len(profiles)]
    for model, per_core in counts.items():
        cells = []
        for target, core in profiles:
            run = per_core.get(core.name)
            cpi = core_cpi(target.cpu.core, core.name)
            ms = run["instructions"] * cpi.cpi / (target.cpu.clock_mhz * 1e3) if run else None
            cells.append(f"{ms:.3g} ms (x/÷{cpi.error_factor:.2g})" if ms else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    counts = json.loads(COUNTS.read_text())
    any_run = next(iter(next(iter(counts.values())).values()))
    sources = ", ".join(f"{name} {ref[:7]}" for name, ref in any_run["sources"].items())
    block = [BEGIN, "", f"Counted with {any_run['qemu']}, {any_run['compiler']}; sources: {sources}.", "",
             "Instructions executed in one inference (the application's timed window), by op kind:", "",
             *counts_table(counts), "",
             "The resulting latency on each built-in microcontroller profile (instructions x the core's CPI / the "
             "profile's clock; the band is the CPI's):", "", *profile_table(counts), "", END]
    text = DOC.read_text()
    DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), "\n".join(block), text, flags=re.S))


if __name__ == "__main__":
    main()
