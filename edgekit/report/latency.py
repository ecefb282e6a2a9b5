"""How a target latency, and the RAM beside it, read in every report: the figure with its basis (emulated:
instructions counted on an emulated core x the core's fitted cycles per instruction; estimated: the target
profile's cost model), its band (`x/÷1.7` multiplicative, or `±30%`), and for an emulated figure the
instructions and what counted them (core, QEMU, TFLite Micro and CMSIS-NN commits). Pure: report.json's dicts
in (a `LatencyEstimate` passes as its `to_dict()`), text out. A report.json written before emulation lacks
`basis` and `band`: its figures read as estimated, with the band of their expected error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from edgekit.estimate import band_text
from edgekit.units import count_text, size_text

EMULATED = "emulated"


def basis(estimate: dict[str, Any]) -> str:
    """emulated or estimated."""
    return estimate.get("basis") or "estimated"


def band(estimate: dict[str, Any]) -> str:
    return estimate.get("band") or band_text(estimate.get("error_factor"), estimate["expected_error"])


def within(estimate: dict[str, Any], measured_ms: float) -> bool:
    """Whether a measurement lies in the stated band: low_ms <= measured <= high_ms."""
    return estimate["low_ms"] <= measured_ms <= estimate["high_ms"]


def stated(estimate: dict[str, Any]) -> bool:
    """Whether the figure has an error band of its own. Vela states none for its NPU estimate (edgekit.npu)."""
    return band(estimate) != band_text(None, 0.0)


def figure(estimate: dict[str, Any], unit: str = " ms", budget: str = "") -> str:
    """`121 ms x/÷1.7 (emulated)`, `41.2 ms ±30% of 50 ms (estimated)`, `0.41 ms of 10 ms (Vela's estimate)`: the
    basis last, as the fit checks say theirs, so that a narrow table column wraps it onto a line of its own."""
    if not stated(estimate):
        return f"{estimate['ms']:.3g}{unit}{budget} (Vela's estimate)"
    return f"{estimate['ms']:.3g}{unit} {band(estimate)}{budget} ({basis(estimate)})"


def range_text(estimate: dict[str, Any]) -> str:
    """`121 ms emulated (71.2-206 ms, x/÷1.7)`; a figure with no band of its own (Vela's) is named as such, with
    the range its CPU part spans when it has one."""
    low, high = estimate["low_ms"], estimate["high_ms"]
    if not stated(estimate):
        spread = f" ({low:.3g}-{high:.3g} ms with the CPU part's band)" if high > low else ""
        return f"{estimate['ms']:.3g} ms, Vela's estimate{spread}"
    return f"{estimate['ms']:.3g} ms {basis(estimate)} ({low:.3g}-{high:.3g} ms, {band(estimate)})"


def qemu(version: str) -> str:
    """`QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)` -> `QEMU 7.2.22`."""
    found = re.search(r"version\s+(\S+)", version)
    return f"QEMU {found.group(1)}" if found else "QEMU"


def emulated_on(estimate: dict[str, Any]) -> str:
    """`an emulated Cortex-M4 (QEMU 7.2.22 mps2-an386; tflite-micro 90b983c, CMSIS-NN 4ab83cc)`."""
    emulation = estimate.get("emulation") or {}
    sources = emulation.get("sources") or {}
    commits = ", ".join(f"{name} {sources[key][:7]}" for key, name in (("tflite-micro", "tflite-micro"),
                                                                      ("cmsis_nn", "CMSIS-NN")) if key in sources)
    where = " ".join(part for part in (qemu(emulation.get("qemu", "")), emulation.get("board")) if part)
    software = commits or emulation.get("runtime", "")
    return f"an emulated {emulation.get('core', 'core')} ({where}{'; ' + software if software else ''})"


def counted(estimate: dict[str, Any]) -> str | None:
    """`7,702,408 instructions counted on an emulated Cortex-M4 (...) x 1.88 cycles per instruction (fitted) /
    120 MHz`; None for a figure that is not emulated."""
    if basis(estimate) != EMULATED or estimate.get("instructions") is None:
        return None
    text = f"{estimate['instructions']:,} instructions counted on {emulated_on(estimate)}"
    emulation = estimate.get("emulation") or {}
    if emulation.get("threads"):  # LiteRT: counted on one thread, timed for the target's threads
        return (text + f" on one thread x {emulation['cpi']:.3g} cycles per instruction ({emulation.get('cpi_basis')})"
                f", shared out over {count_text(emulation['threads'], 'thread')}, / {emulation['clock_mhz']:g} MHz")
    if emulation.get("cpi") and estimate["ms"]:
        mhz = estimate["instructions"] * emulation["cpi"] / (estimate["ms"] * 1e3)  # ms = instructions x CPI / clock
        text += (f" x {emulation['cpi']:.3g} cycles per instruction ({emulation.get('cpi_basis', 'fitted')}) "
                 f"/ {mhz:.4g} MHz")
    return text


def core_of(variant: dict[str, Any]) -> str | None:
    """The emulated core a variant's figures came from, if any."""
    emulation = (variant.get("target_latency") or {}).get("emulation") or {}
    found = re.search(r"emulated (\S+)", (variant.get("ram") or {}).get("method") or "")
    return emulation.get("core") or (found.group(1) if found else None)


def heap_figure(ram: dict[str, Any]) -> str | None:
    """`302 KiB on an emulated cortex-a72 (loading 107 KiB, allocate_tensors 195 KiB: arena and XNNPACK's packed
    weights); the model file mapped, 160 KiB`: LiteRT's own heap beside the resident set; None without one."""
    heap = ram.get("heap") or {}
    if "total_bytes" not in heap:
        return None
    return (f"{size_text(heap['total_bytes'])} on an emulated {ram.get('heap_core')} (loading "
            f"{size_text(heap.get('interpreter_bytes', 0))}, allocate_tensors "
            f"{size_text(heap.get('allocate_bytes', 0))}: arena and XNNPACK's packed weights); the model file mapped, "
            f"{size_text(heap.get('model_mapped_bytes', 0))}")


def ram_figure(ram: dict[str, Any], core: str | None = None) -> str | None:
    """What an emulated RAM figure is, with the host's beside it; None for a RAM figure of another basis."""
    if ram.get("basis") != EMULATED or ram.get("required_bytes") is None:
        return None
    host = ram.get("arena_host_bytes")
    return (f"{ram['required_bytes']:,} B, the 32-bit tensor arena TFLite Micro used on "
            f"{'an emulated ' + core if core else 'the emulated core'} ({ram['arena_bytes']:,} B, rounded up to 16)"
            + (f"; {host:,} B on this host (64-bit)" if host else ""))


def figures_note(latency_bases: Iterable[str | None], ram_bases: Iterable[str | None]) -> str:
    """What a table's latency and RAM figures are, given the bases in it."""
    latency, ram = set(latency_bases) - {None}, set(ram_bases)
    if EMULATED not in latency | ram:
        return "RAM and flash are measured; latency is an estimate, with its band."
    lat = ("Latency is counted on an emulated core (instructions x the core's fitted cycles per instruction)"
           + (", or an estimate where it says estimated" if "estimated" in latency else ""))
    memory = ("RAM is the 32-bit tensor arena on the emulated core" if ram == {EMULATED} else
              "RAM is measured on this host, or the 32-bit tensor arena on an emulated core where it says emulated")
    return f"{lat}; {memory}; flash is measured."


def method_lines(estimates: Iterable[tuple[str, dict[str, Any] | None]]) -> list[str]:
    """How the target latencies of (target, estimate) pairs were made, one line a basis present."""
    emulated: dict[str, dict[str, Any]] = {}
    estimated: list[str] = []
    unemulated: dict[str, dict[str, Any]] = {}  # estimated with a multiplicative band: the emulator did not run
    for target, estimate in estimates:
        if estimate and basis(estimate) == EMULATED:
            emulated.setdefault(target, estimate)
        elif estimate and estimate.get("error_factor"):
            unemulated.setdefault(target, estimate)
        elif estimate and target not in estimated:
            estimated.append(target)
    lines = []
    if emulated:
        runs = "; ".join(sorted({emulated_on(e) for e in emulated.values()}))
        bands = ", ".join(sorted({band(e) for e in emulated.values()}))
        lines.append(f"Target latency on {', '.join(emulated)}: emulated. The bundle's program ran on {runs}; the "
                     "instructions it executed in one inference are counted (exact), x the core's cycles per "
                     f"instruction fitted on published measurements, / the clock. The band ({bands}) is "
                     "multiplicative: the truth within ms / f to ms x f.")
    if unemulated:
        bands = ", ".join(sorted({band(e) for e in unemulated.values()}))
        lines.append(f"Target latency on {', '.join(unemulated)}: estimated, not emulated (each figure's method says "
                     f"why and how), with a multiplicative band ({bands}).")
    if estimated:
        lines.append(f"Target latency on {', '.join(estimated)}: an estimate from the target profile's per-op cost "
                     "model, with its expected error.")
    return lines
