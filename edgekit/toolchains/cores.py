"""The Cortex-M cores edgekit builds TensorFlow Lite Micro for and runs on QEMU's Arm MPS2/MPS3 boards.

Each core carries the compiler flags of TFLM's `cortex_m_generic` target for it (tflite-micro's
`tensorflow/lite/micro/tools/make/targets/cortex_m_generic_makefile.inc`), the board QEMU emulates it on
and that board's memory map (QEMU's MPS2/MPS3 documentation; checked by running programs on each).
CMSIS-NN is built for every core: it has SIMD paths for the DSP extension (M4, M7, M33) and MVE (M55),
and plain C for cores without them (M0+, M3), which is what TFLM runs there too.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UsageError


@dataclass(frozen=True)
class Region:
    origin: int
    length: int


@dataclass(frozen=True)
class Core:
    name: str  # as a target profile names it: "Cortex-M4"
    arch: str  # as a profile's cpu.arch says it
    mcpu: str  # gcc's -mcpu
    float_abi: str  # soft | softfp | hard
    fpu: str | None  # gcc's -mfpu, when the core has one
    board: str  # QEMU machine
    code: Region  # where code and read-only data go (and the vector table, when `boot` is None)
    ram: Region  # data, the tensor arena, heap and stack
    features: tuple[str, ...]  # what the kernels can use: dsp, mve, fpu-sp, fpu-dp
    enable_fpu: bool  # the start-up code must enable CP10/CP11 in CPACR
    boot: Region | None = None  # where the board reads the vector table, when not at the start of `code`

    @property
    def flags(self) -> tuple[str, ...]:
        flags = [f"-mcpu={self.mcpu}", "-mthumb", f"-mfloat-abi={self.float_abi}", "-mlittle-endian"]
        if self.fpu:
            flags.append(f"-mfpu={self.fpu}")
        return tuple(flags)


_MPS2_CODE, _MPS2_RAM = Region(0x00000000, 4 << 20), Region(0x20000000, 4 << 20)
CORES = {
    core.name: core for core in (
        # ARMv6-M: runs unchanged on the Cortex-M3 board (v6-M is a subset of v7-M), so its instructions are
        # counted there; TFLM's cortex-m0plus flags.
        Core("Cortex-M0+", "armv6-m", "cortex-m0plus", "soft", None, "mps2-an385", _MPS2_CODE,
             _MPS2_RAM, (), False),
        Core("Cortex-M3", "armv7-m", "cortex-m3", "soft", None, "mps2-an385", _MPS2_CODE, _MPS2_RAM, (),
             False),
        Core("Cortex-M4", "armv7e-m", "cortex-m4", "hard", "auto", "mps2-an386", _MPS2_CODE, _MPS2_RAM,
             ("dsp", "fpu-sp"), True),
        Core("Cortex-M7", "armv7e-m", "cortex-m7", "hard", "auto", "mps2-an500", _MPS2_CODE, _MPS2_RAM,
             ("dsp", "fpu-sp", "fpu-dp"), True),
        # Boots secure: code in SSRAM1's secure alias, data in SSRAM3's.
        Core("Cortex-M33", "armv8-m.main", "cortex-m33", "hard", "auto", "mps2-an505",
             Region(0x10000000, 4 << 20), Region(0x38000000, 2 << 20), ("dsp", "fpu-sp"), True),
        # ITCM is 512 KB, too small for a large model beside the code: code and data go to the 2 MB SRAM
        # (secure alias); the DTCM holds data. soft float would disable MVE, so hard (TFLM: FLOAT=hard).
        Core("Cortex-M55", "armv8.1-m.main", "cortex-m55", "hard", "auto", "mps3-an547",
             Region(0x11000000, 2 << 20), Region(0x30000000, 512 << 10), ("dsp", "mve", "fpu-sp", "fpu-dp"), True,
             boot=Region(0x10000000, 512 << 10)),
    )
}
# A profile's core name -> the core whose code it runs: an M4F is an M4, an M85 runs M55 code, an M0 v6-M code.
ALIASES = {"cortex-m0": "Cortex-M0+", "cortex-m0+": "Cortex-M0+", "cortex-m0plus": "Cortex-M0+",
           "cortex-m4f": "Cortex-M4", "cortex-m7f": "Cortex-M7", "cortex-m33f": "Cortex-M33",
           "cortex-m85": "Cortex-M55"}


def emulated_core(name: str | None) -> Core | None:
    """The core a profile's `cpu.core` is emulated as, or None when edgekit cannot emulate it (Xtensa, RISC-V,
    Cortex-A)."""
    if not name:
        return None
    key = name.strip().lower()
    if key in ALIASES:
        return CORES[ALIASES[key]]
    return next((core for core in CORES.values() if core.name.lower() == key), None)


def core(name: str) -> Core:
    found = emulated_core(name)
    if found is None:
        raise UsageError(f"unknown core '{name}'; edgekit emulates {', '.join(CORES)} (and Cortex-M0, M4F, M7F, M85)")
    return found


# --- Cortex-A cores: LiteRT's aarch64 build on qemu-aarch64 (edgekit.toolchains.aarch64 builds and runs them) ---
# Here only what a target profile needs (their names, and what a profile naming a core gets), so that loading a
# profile does not import the runtime's builder.
A_CORES = ("cortex-a53", "cortex-a72", "cortex-a76", "cortex-a720")
# A profile's cpu.core -> the emulated core whose kernels and instruction stream it gets: the same core, or the
# nearest QEMU models with the same instruction set features XNNPACK picks its kernels by (no dot product before
# the A75/A76 generation; dot product after). The CPI of the emulated core is used for the profile's core.
A_ALIASES = {
    "cortex-a53": "cortex-a53", "cortex-a55": "cortex-a53",  # in-order; the A55's dot product is not used
    "cortex-a57": "cortex-a72", "cortex-a72": "cortex-a72", "cortex-a73": "cortex-a72",
    "cortex-a75": "cortex-a76", "cortex-a76": "cortex-a76", "cortex-a77": "cortex-a76", "cortex-a78": "cortex-a76",
    "cortex-a78ae": "cortex-a76", "cortex-a78c": "cortex-a76", "cortex-x1": "cortex-a76",
    "neoverse-n1": "cortex-a76",
    # Armv9 big cores with int8 matrix multiply: QEMU's max, as edgekit.toolchains.aarch64 sets it up for the A720
    "cortex-a710": "cortex-a720", "cortex-a715": "cortex-a720", "cortex-a720": "cortex-a720",
    "cortex-a725": "cortex-a720", "cortex-x2": "cortex-a720", "cortex-x3": "cortex-a720", "cortex-x4": "cortex-a720",
}
# What a profile naming only the core gets as cpu.arch and cpu.features (edgekit.targets.FEATURES words).
A_PROFILE_DEFAULTS = {
    "cortex-a53": ("armv8-a", ("neon",)),
    "cortex-a72": ("armv8-a", ("neon",)),
    "cortex-a76": ("armv8.2-a", ("neon", "fp16", "dotprod")),
    "cortex-a720": ("armv9.2-a", ("neon", "fp16", "dotprod", "i8mm")),
}


def emulated_a_core(name: str | None) -> str | None:
    """The emulated Cortex-A core (edgekit.toolchains.aarch64) a profile's `cpu.core` runs as, or None."""
    key = (name or "").strip().lower()
    return A_ALIASES.get(key) or (key if key in A_CORES else None)
