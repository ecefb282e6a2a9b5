"""Device targets: one TOML profile per device (targets/*.toml), loaded into frozen dataclasses.

A profile holds facts about a device (its CPU, its memory and what is left of it for a model, the runtime
and precisions it runs) and edgekit's default budgets for it. Facts cite their sources in the TOML files;
this module only checks that they are complete and consistent. It never imports TensorFlow, so that
`edgekit targets` starts fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgekit import _toml
from edgekit.errors import UsageError
from edgekit.estimate import LatencyModel, parse_latency
from edgekit.toolchains.cores import A_CORES, A_PROFILE_DEFAULTS, emulated_a_core, emulated_core
from edgekit.toolchains.cores import Core as EmulatedCore


class DeviceClass(StrEnum):
    PHONE = "phone"
    SBC = "sbc"
    MCU = "mcu"

    @property
    def noun(self) -> str:
        """The class in words, with its article: 'a single-board computer'."""
        return {"phone": "a phone", "sbc": "a single-board computer", "mcu": "a microcontroller"}[self.value]


class Runtime(StrEnum):
    LITERT = "litert"
    TFLM = "tflite-micro"


class Precision(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT16X8 = "int16x8"


# The words a profile may use in cpu.features. A closed list, so that a typo ('fpu_sp') is an error
# instead of a core that silently looks FPU-less to the capability checks.
FEATURES: dict[str, str] = {
    "neon": "Arm Advanced SIMD with floating point (A-profile cores)",
    "fp16": "Armv8.2-A half-precision arithmetic (FEAT_FP16)",
    "dotprod": "Armv8.2-A int8 dot product instructions (FEAT_DotProd)",
    "i8mm": "Armv8.6-A int8 matrix multiply instructions (FEAT_I8MM)",
    "sve2": "Arm Scalable Vector Extension 2",
    "dsp": "Armv7E-M DSP extension: 32-bit SIMD multiply-accumulate, used by CMSIS-NN",
    "mve": "Armv8.1-M Helium vector extension",
    "fpu-sp": "single-precision floating-point unit",
    "fpu-dp": "double-precision floating-point unit (single precision included)",
    "pie-simd": "ESP32-S3 Processor Instruction Extensions: 128-bit SIMD",
    "rvv": "RISC-V vector extension",
}
# On A-profile cores Advanced SIMD and floating point come together, so 'neon' implies an FPU.
FPU_FEATURES = ("fpu-sp", "fpu-dp", "neon")

NO_RESERVE = ("none given in the profile: all of the RAM and flash is counted as available to the model; give "
              "memory.ram_available_kb and flash_available_kb to keep some for the firmware")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_LIST_COMMAND = "edgekit targets"
KEYS = ("name", "title", "class", "runtime", "precisions", "cpu", "memory", "budgets", "latency", "npu")
# The Ethos-U configurations Vela 5.2 compiles for (its --accelerator-config choices that are U55 or U65).
NPU_ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
                    "ethos-u65-512")
NOT_EMULATED = "none"  # cpu.emulated_as of a profile that keeps its cost model (edgekit compare --calibrate writes it)


@dataclass(frozen=True)
class Cpu:
    arch: str  # instruction set architecture, e.g. 'armv8-a', 'armv7e-m', 'xtensa-lx7'
    core: str  # e.g. 'Cortex-A72'
    clock_mhz: float  # the clock the core runs at by default on this device
    cores: int  # cores a model may use (for a phone: the big cluster)
    features: tuple[str, ...]  # words from FEATURES, e.g. ('neon',), ('dsp', 'fpu-sp'), ('pie-simd',)
    # The emulated Cortex-A core (edgekit.toolchains.aarch64) LiteRT's latency is counted on; None: not emulated
    emulated_as: str | None = None

    @property
    def has_fpu(self) -> bool:
        return any(f in FPU_FEATURES for f in self.features)


@dataclass(frozen=True)
class Memory:
    """Sizes in KiB (the `_kb` names stay; 1 KiB = 1024 bytes). The *_available_kb figures are what is left to the
    model after the OS or firmware and the runtime take theirs; `reserve_reason` says what takes the rest."""

    ram_kb: int
    flash_kb: int | None  # None: the model is a file on a file system (SD card, UFS, NVMe), not in flash
    ram_available_kb: int
    flash_available_kb: int | None
    reserve_reason: str
    # TFLite Micro targets: share added to the arena measured on the host (reference kernels) for what the
    # device's kernels add (CMSIS-NN and ESP-NN scratch buffers) and differences between TFLM versions.
    arena_margin: float = 0.0


@dataclass(frozen=True)
class Budgets:
    """edgekit's defaults for a model on this target; None means no budget. Users override them."""

    latency_ms: float | None
    ram_kb: float | None
    flash_kb: float | None


@dataclass(frozen=True)
class Npu:
    """An Arm Ethos-U NPU beside the CPU, and how Vela (edgekit.npu) is told to compile for it: its MAC
    configuration, and the system configuration and memory mode of Vela's own vela.ini that match the board."""

    accelerator: str  # Vela's --accelerator-config, e.g. 'ethos-u55-128' (NPU_ACCELERATORS)
    clock_mhz: float  # the NPU's clock on this device: Vela's cycles are turned into time with it
    system_config: str  # a [System_Config.X] of Vela's vela.ini, e.g. 'Ethos_U55_High_End_Embedded'
    memory_mode: str  # a [Memory_Mode.X] of Vela's vela.ini, e.g. 'Shared_Sram'


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    device_class: DeviceClass
    runtime: Runtime
    precisions: tuple[Precision, ...]  # what it can run, in order of preference for shipping
    cpu: Cpu
    memory: Memory
    budgets: Budgets
    file: Path = field(compare=False)
    latency: LatencyModel | None = None  # the calibrated cost model behind target latency estimates
    npu: Npu | None = None  # an Arm Ethos-U NPU the int8 model is compiled for with Vela (edgekit.npu)

    def with_budgets(self, latency_ms: float | None = None, ram_kb: float | None = None,
                     flash_kb: float | None = None) -> Target:
        """A copy with budgets from the command line; None keeps the profile's value."""
        budgets = Budgets(
            latency_ms=self.budgets.latency_ms if latency_ms is None
            else _override(self, "latency budget", latency_ms, "ms", None, ""),
            ram_kb=self.budgets.ram_kb if ram_kb is None
            else _override(self, "RAM budget", ram_kb, "KiB", self.memory.ram_available_kb, "RAM"),
            flash_kb=self.budgets.flash_kb if flash_kb is None
            else _override(self, "flash budget", flash_kb, "KiB", self.memory.flash_available_kb, "flash"),
        )
        return replace(self, budgets=budgets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, laid out like the TOML file (for manifests and `edgekit targets show --json`)."""
        data = {
            "name": self.name,
            "title": self.title,
            "class": self.device_class.value,
            "runtime": self.runtime.value,
            "precisions": [p.value for p in self.precisions],
            "cpu": {"arch": self.cpu.arch, "core": self.cpu.core, "clock_mhz": self.cpu.clock_mhz,
                    "cores": self.cpu.cores, "features": list(self.cpu.features),
                    **({"emulated_as": self.cpu.emulated_as} if self.cpu.emulated_as else {})},
            "memory": {"ram_kb": self.memory.ram_kb, "flash_kb": self.memory.flash_kb,
                       "ram_available_kb": self.memory.ram_available_kb,
                       "flash_available_kb": self.memory.flash_available_kb,
                       "reserve_reason": self.memory.reserve_reason,
                       "arena_margin": self.memory.arena_margin},
            "budgets": {"latency_ms": self.budgets.latency_ms, "ram_kb": self.budgets.ram_kb,
                        "flash_kb": self.budgets.flash_kb},
            "file": str(self.file),
        }
        if self.latency:
            data["latency"] = asdict(self.latency)
        if self.npu:
            data["npu"] = asdict(self.npu)
        return data

    def summary(self) -> dict[str, str]:
        """One row of the `edgekit targets` table."""
        latency = self.budgets.latency_ms
        return {
            "name": self.name,
            "class": self.device_class.value,
            "core": self.cpu.core,
            "clock": f"{self.cpu.clock_mhz:g} MHz",
            "cores": str(self.cpu.cores),
            "RAM available": _size(self.memory.ram_available_kb),
            "flash available": _size(self.memory.flash_available_kb),
            "runtime": self.runtime.value,
            "precisions": ", ".join(p.value for p in self.precisions),
            "latency budget": "-" if latency is None else f"{latency:g} ms",
        }


def names() -> list[str]:
    """The built-in target names."""
    return list(_toml.builtin_names("targets"))


def load(name_or_path: str | Path) -> Target:
    """A built-in target by name (`rpi4`) or a user's profile by path (`./my-board.toml`)."""
    path = _toml.resolve("targets", "target", name_or_path, _LIST_COMMAND)
    return _parse(_toml.read(path), path)


def load_all() -> list[Target]:
    return [load(name) for name in names()]


ALL = "all"  # on a command line: every built-in target


def resolve(refs: Iterable[str | Target]) -> list[Target]:
    """The targets a command line names: built-in names, TOML paths, `all` (every built-in target, in
    `edgekit targets` order) or Targets already loaded; each target once, where it first appears
    (`rpi4 nucleo-l4r5zi rpi4` is rpi4, nucleo-l4r5zi). An unknown name is a one-line UsageError with a
    suggestion."""
    chosen: dict[str, Target] = {}
    for ref in refs:
        for target in load_all() if ref == ALL else [ref if isinstance(ref, Target) else load(ref)]:
            chosen.setdefault(target.name, target)
    return list(chosen.values())


def _parse(data: dict[str, Any], path: Path) -> Target:
    top = _toml.Table(data, path).only(*KEYS)
    name = _name(top, path)
    # A profile whose core edgekit emulates (a Cortex-M) needs only the core, its clock and the memory:
    # the rest has defaults from the core, and latency comes from running the model on the emulated core.
    # So does a profile whose Cortex-A core edgekit emulates (LiteRT on qemu-aarch64): a board or phone.
    cpu_data = data.get("cpu")
    core_name = cpu_data.get("core") if isinstance(cpu_data, dict) and isinstance(cpu_data.get("core"), str) else None
    core = emulated_core(core_name)
    a_core = emulated_a_core(core_name) if core is None else None
    emulated = core is not None or a_core is not None
    title = top.get("title", str, name if emulated else ...)
    device_class = DeviceClass(top.choice("class", [c.value for c in DeviceClass], ... if not emulated else
                                          (DeviceClass.MCU if core else DeviceClass.SBC).value))
    runtime = Runtime(top.choice("runtime", [r.value for r in Runtime], ... if not emulated else
                                 (Runtime.TFLM if core else Runtime.LITERT).value))
    default_precisions = ["int8"] + (["float32"] if core.enable_fpu else []) if core else \
        ["int8", "float32"] if a_core else None
    precisions = _precisions(top, default_precisions)
    cpu = _cpu(top.table("cpu").only(*_keys(Cpu)), core, a_core)
    memory_data = data.get("memory")
    reserved = isinstance(memory_data, dict) and any(
        key in memory_data for key in ("ram_available_kb", "flash_available_kb", "reserve_reason"))
    memory = _memory(top.table("memory").only(*_keys(Memory)), minimal=emulated and not reserved)
    budgets = _budgets(top.table("budgets", required=False).only(*_keys(Budgets)), memory)
    latency_table = top.table("latency", required=False)
    latency = parse_latency(latency_table, cpu.features, FEATURES) if latency_table.data else None
    npu_table = top.table("npu", required=False).only(*_keys(Npu))
    npu = _npu(npu_table) if npu_table.data else None
    top.done()

    if device_class is DeviceClass.MCU and runtime is not Runtime.TFLM:
        raise _error(top, "runtime", f"'{Runtime.TFLM.value}' for a microcontroller (class 'mcu')",
                     runtime.value)
    if runtime is Runtime.TFLM and Precision.FLOAT16 in precisions:
        raise UsageError(f"{path}: key 'precisions': {Runtime.TFLM.value} has no float16 kernels; "
                         f"got {[p.value for p in precisions]!r}")
    if not cpu.has_fpu and precisions != (Precision.INT8,):
        raise UsageError(f"{path}: key 'precisions': core '{cpu.core}' has no FPU (cpu.features has none of "
                         f"{', '.join(repr(f) for f in FPU_FEATURES)}), so it runs int8 only; "
                         f"got {[p.value for p in precisions]!r}")
    return Target(name=name, title=title, device_class=device_class, runtime=runtime, precisions=precisions,
                  cpu=cpu, memory=memory, budgets=budgets, file=path, latency=latency, npu=npu)


def _npu(table: _toml.Table) -> Npu:
    npu = Npu(accelerator=table.choice("accelerator", NPU_ACCELERATORS), clock_mhz=_positive(table, "clock_mhz"),
              system_config=table.get("system_config", str), memory_mode=table.get("memory_mode", str))
    table.done()
    return npu


def _keys(section: type) -> list[str]:
    """The keys of a profile's table: the fields of the dataclass it becomes."""
    return [f.name for f in fields(section)]


def _name(top: _toml.Table, path: Path) -> str:
    name = top.get("name", str)
    if not _NAME.fullmatch(name):
        raise _error(top, "name", "lowercase letters, digits, '-' and '_', starting with a letter or digit",
                     name)
    if path.resolve().parent == _toml.builtin_dir("targets").resolve() and name != path.stem:
        raise _error(top, "name", f"'{path.stem}' (a built-in target is named after its file)", name)
    return name


def _precisions(top: _toml.Table, default: list[str] | None = None) -> tuple[Precision, ...]:
    valid = [p.value for p in Precision]
    values = top.strings("precisions") if default is None or "precisions" in top.data else tuple(default)
    if not values or any(v not in valid for v in values) or len(set(values)) != len(values):
        expected = "a non-empty list without repeats of " + ", ".join(repr(v) for v in valid)
        raise _error(top, "precisions", expected, list(values))
    return tuple(Precision(v) for v in values)


def _cpu(table: _toml.Table, emulated: EmulatedCore | None, a_core: str | None = None) -> Cpu:
    """`emulated`: the Cortex-M core edgekit emulates for this profile's cpu.core, `a_core` the Cortex-A one; its
    arch and features are the defaults (a profile may still say them: an M4 without its FPU)."""
    default_arch, default_features = (emulated.arch, emulated.features) if emulated else \
        A_PROFILE_DEFAULTS[a_core] if a_core else (..., ())
    arch = table.get("arch", str, default_arch)
    core = table.get("core", str)
    clock_mhz = _positive(table, "clock_mhz")
    cores = table.integer("cores", ... if emulated is None and a_core is None else 1, minimum=1)
    features = table.strings("features") if (emulated is None and a_core is None) or "features" in table.data \
        else default_features
    emulated_as = table.choice("emulated_as", [*A_CORES, NOT_EMULATED], a_core)
    table.done()
    for feature in features:
        if feature not in FEATURES:
            raise UsageError(f"{table.file}: key '{table.where}.features': unknown feature '{feature}'; "
                             f"valid: {', '.join(FEATURES)}")
    if len(set(features)) != len(features):
        raise _error(table, "features", "a list without repeats", list(features))
    return Cpu(arch=arch, core=core, clock_mhz=clock_mhz, cores=cores, features=features,
               emulated_as=None if emulated_as == NOT_EMULATED else emulated_as)


def _memory(table: _toml.Table, minimal: bool = False) -> Memory:
    """`minimal` (an emulated core's profile that gives no reserve at all): ram_kb and flash_kb are enough, all
    of it counts as available, and the profile says so. A reserve given in part is an error as before."""
    ram_kb = table.integer("ram_kb", minimum=1)
    ram_available_kb = table.integer("ram_available_kb", ram_kb if minimal else ..., minimum=1)
    flash_kb = table.integer("flash_kb", None, minimum=1)
    flash_available_kb = table.integer("flash_available_kb", flash_kb if minimal else None, minimum=1)
    reserve_reason = table.get("reserve_reason", str, NO_RESERVE if minimal else ...)
    arena_margin = table.number("arena_margin", 0.0, minimum=0.0, maximum=1.0)
    table.done()
    if ram_available_kb > ram_kb:
        raise _error(table, "ram_available_kb", f"at most memory.ram_kb ({ram_kb})", ram_available_kb)
    if (flash_kb is None) != (flash_available_kb is None):
        given, other = ("flash_kb", "flash_available_kb") if flash_kb is not None else \
            ("flash_available_kb", "flash_kb")
        raise UsageError(f"{table.file}: key '{table.where}.{other}': expected an integer >= 1 "
                         f"because memory.{given} is given (give both or neither), missing")
    if flash_kb is not None and flash_available_kb > flash_kb:
        raise _error(table, "flash_available_kb", f"at most memory.flash_kb ({flash_kb})", flash_available_kb)
    if not reserve_reason.strip():
        raise _error(table, "reserve_reason", "a sentence saying what takes the memory that is not available",
                     reserve_reason)
    return Memory(ram_kb=ram_kb, flash_kb=flash_kb, ram_available_kb=ram_available_kb,
                  flash_available_kb=flash_available_kb, reserve_reason=reserve_reason,
                  arena_margin=arena_margin)


def _budgets(table: _toml.Table, memory: Memory) -> Budgets:
    latency_ms = _positive(table, "latency_ms", None)
    ram_kb = _positive(table, "ram_kb", None)
    flash_kb = _positive(table, "flash_kb", None)
    table.done()
    if ram_kb is not None and ram_kb > memory.ram_available_kb:
        raise _error(table, "ram_kb", f"at most memory.ram_available_kb ({memory.ram_available_kb})", ram_kb)
    if flash_kb is not None and memory.flash_available_kb is not None and \
            flash_kb > memory.flash_available_kb:
        raise _error(table, "flash_kb", f"at most memory.flash_available_kb ({memory.flash_available_kb})",
                     flash_kb)
    return Budgets(latency_ms=latency_ms, ram_kb=ram_kb, flash_kb=flash_kb)


def _positive(table: _toml.Table, key: str, default: Any = ...) -> Any:
    value = table.get(key, float, default, expected="a number > 0")
    if value is not None and value <= 0:
        raise _error(table, key, "a number > 0", value)
    return value


def _override(target: Target, what: str, value: Any, unit: str, available: int | None, memory: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"{what} must be a number > 0 {unit}, got {value!r}")
    if available is not None and value > available:
        raise UsageError(f"{what} of {value:g} {unit} is more than the {available} {unit} of {memory} "
                         f"available on target '{target.name}' ({target.file})")
    return float(value)


def _error(table: _toml.Table, key: str, expected: str, got: Any) -> UsageError:
    """The same shape as _toml's messages: file, dotted key, what was expected, what was received."""
    where = f"{table.where}.{key}" if table.where else key
    return UsageError(f"{table.file}: key '{where}': expected {expected}, got {got!r}")


def _size(kb: float | None) -> str:
    from edgekit.units import kib_text

    return "-" if kb is None else kib_text(kb)
