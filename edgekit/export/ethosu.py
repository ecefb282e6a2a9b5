"""The Ethos-U part of a microcontroller bundle for an NPU target: the model Vela compiled, the driver start-up
the program calls before TensorFlow Lite Micro, and the build settings that swap TFLM's Ethos-U stub for its
real kernel and add Arm's Ethos-U driver.

Which driver, and how TFLM builds it, is read from the pinned tflite-micro tree, never restated here: the commit
from `tools/make/ethos_u_core_driver_download.sh` (the revision TFLM's `CO_PROCESSOR=ethos_u` build fetches), the
driver's source files and flags from `tools/make/ext_libs/ethos_u.inc`. edgekit does not fetch the driver itself
(only the bundle's build needs it), so the parts that include its headers are compiled by the user's build, not
here; the rest of the program is the same application every MCU bundle carries.

The arena is an estimate, and says so: TFLite Micro cannot run the compiled model without the NPU, so edgekit
cannot measure it. In Vela's Shared_Sram and Sram_Only modes Vela lays out every tensor of the compiled model in
one arena (its summary's SRAM figure) that TFLM's planner follows; TFLM adds its own persistent data (tensor and
operator structs), taken from the host TFLM run of the source model, which has at least as many tensors and
operators as the compiled one.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import StageError, UsageError

if TYPE_CHECKING:
    from edgekit.npu import VelaResult

STAGE = "ethos-u bundle"
DOWNLOAD_SCRIPT = "tensorflow/lite/micro/tools/make/ethos_u_core_driver_download.sh"
MAKE_INCLUDE = "tensorflow/lite/micro/tools/make/ext_libs/ethos_u.inc"
STUB_KERNEL = "tensorflow/lite/micro/kernels/ethosu.cc"  # returns no registration: for builds without an NPU
NPU_KERNEL = "tensorflow/lite/micro/kernels/ethos_u/ethosu.cc"  # TFLM's Ethos-U custom operator
BUNDLE_MODES = ("Shared_Sram", "Sram_Only")  # Vela's modes whose arena is one block of SRAM (the TFLM arena)
CUSTOM_CODE = "ethos-u"  # the custom operator Vela writes (TFLM's GetString_ETHOSU)


@dataclass(frozen=True)
class Driver:
    """Arm's Ethos-U core driver as the pinned TFLM builds it for one NPU architecture."""

    url: str
    commit: str
    arch: str  # u55, u65 or u85
    sources: tuple[str, ...]  # relative to the driver's tree
    definitions: tuple[str, ...]  # preprocessor definitions, without -D


def arch(accelerator: str) -> str:
    """'ethos-u55-256' -> 'u55'."""
    found = re.fullmatch(r"ethos-(u\d\d)-\d+", accelerator)
    if found is None:
        raise UsageError(f"npu.accelerator '{accelerator}' names no Ethos-U architecture")
    return found.group(1)


def driver(tflm: Path, accelerator: str) -> Driver:
    """The driver TFLM at `tflm` (a tflite-micro tree) fetches and compiles for `accelerator`."""
    try:
        script = (tflm / DOWNLOAD_SCRIPT).read_text()
        include = (tflm / MAKE_INCLUDE).read_text()
    except OSError as error:
        raise StageError(STAGE, f"tflite-micro has no Ethos-U build files ({error.strerror}: {error.filename})") \
            from None
    url = re.search(r'git clone "([^"]+)"', script)
    commit = re.search(r"checkout ([0-9a-f]{40})", script)
    common = re.search(r"^ETHOSU_FLAGS := (.+)$", include, re.M)
    npu = arch(accelerator)
    flags = re.search(rf"ifeq \(\$\(ETHOSU_ARCH\), {npu}\)\s*ETHOSU_FLAGS \+= \\\s*(.*?)\n(?:else|endif)", include,
                      re.S)
    files = re.findall(r"\$\(ETHOSU_DRIVER_PATH\)/(src/\w+\.c)", include)
    if not (url and commit and common and flags and files):
        raise StageError(STAGE, f"cannot read the Ethos-U driver's revision, sources or flags for {npu} from "
                                f"tflite-micro's {DOWNLOAD_SCRIPT} and {MAKE_INCLUDE}")
    device = [f for f in files if "device" in f and npu in f]  # u55 and u65 share ethosu_device_u55_u65.c
    definitions = [flag[2:] for flag in (common.group(1) + " " + flags.group(1)).replace("\\", " ").split()
                   if flag.startswith("-D")]
    return Driver(url.group(1), commit.group(1), npu,
                  tuple(f for f in files if "device" not in f) + tuple(device[:1]), tuple(definitions))


@dataclass(frozen=True)
class Part:
    """What an Ethos-U bundle adds to the CPU bundle: the Vela model, the driver, and the arena estimate."""

    result: VelaResult
    driver: Driver
    tflm_ref: str
    persistent_bytes: int  # TFLite Micro's persistent data for the source model, on the host
    margin: float

    @property
    def model(self) -> Path:
        return Path(self.result.model_path)

    @property
    def arena_bytes(self) -> int:
        """Vela's arena plus TFLM's persistent data, plus the profile's margin, rounded up to 16 bytes."""
        return math.ceil((self.result.sram_bytes + self.persistent_bytes) * (1 + self.margin) / 16) * 16

    @property
    def arena_note(self) -> str:
        return (f"Estimated, not measured (TFLite Micro cannot run the Vela model without\n"
                f"// the NPU): the {self.result.sram_bytes} bytes Vela lays out for the compiled model's tensors, "
                f"plus the\n// {self.persistent_bytes} bytes of persistent data TFLite Micro kept for the source model "
                f"on the host,\n// plus the target profile's {self.margin:.0%} margin, rounded up to 16 bytes.")

    @property
    def arena_text(self) -> str:
        return (f"estimated: Vela's {self.result.sram_bytes:,} for the compiled model's tensors plus TFLite Micro's "
                f"{self.persistent_bytes:,} of persistent data on the host, plus {self.margin:.0%}; see Ethos-U NPU "
                "below")

    def files(self) -> dict[str, str]:
        return {"ethosu_npu.h": init_header(), "ethosu_npu.c": init_source(self.driver, self.result.accelerator)}

    def description(self, source_name: str, source_sha256: str) -> dict[str, Any]:
        """model.json's `npu` block."""
        r = self.result
        return {"compiler": f"ethos-u-vela {r.vela_version}", "accelerator": r.accelerator,
                "system_config": r.system_config, "memory_mode": r.memory_mode, "clock_mhz": r.clock_mhz,
                "source_model": source_name, "source_sha256": source_sha256, "sram_bytes": r.sram_bytes,
                "cpu_ops": [op.op for op in r.cpu_ops], "driver": asdict(self.driver)}


def part(model: Path, info, target, layout: str) -> tuple[Part | None, str]:
    """(the Ethos-U part, '') when the bundle for `target` carries a Vela model of `model` (`info`: what
    inspect_model read of it); (None, why not) when it carries the model for the CPU alone. A layout other than
    CMake, or a memory mode whose arena is not one block of SRAM, is a one-line error. Its `persistent_bytes` is 0
    until the host run of the source model gives it."""
    from edgekit import npu
    from edgekit.bench import precision_of
    from edgekit.toolchains import sources

    if target.npu is None:
        return None, ""
    precision = precision_of(info)
    if precision not in ("int8", "int16x8"):
        return None, f"Vela compiles quantized models and this one is {precision}: the bundle runs it on the CPU"
    if layout != "cmake":
        raise UsageError(f"an Ethos-U bundle is a CMake project (TFLM's Ethos-U kernel and Arm's driver); "
                         f"--layout {layout} has neither: use --layout cmake")
    if target.npu.memory_mode not in BUNDLE_MODES:
        raise UsageError(f"{target.name}: a microcontroller bundle for an Ethos-U needs Vela's memory mode "
                         f"{' or '.join(BUNDLE_MODES)} (the arena in one block of SRAM); this profile has "
                         f"{target.npu.memory_mode}")
    result = npu.compile_model(model, target.npu)
    root = sources.source_root()
    return Part(result, driver(root / "tflite-micro", target.npu.accelerator), sources.BY_NAME["tflite-micro"].ref,
                0, target.memory.arena_margin), ""


def init_header() -> str:
    return """// Generated by edgekit: starts Arm's Ethos-U driver, before TFLite Micro runs the Vela model.
#ifndef EDGEKIT_ETHOSU_NPU_H_
#define EDGEKIT_ETHOSU_NPU_H_

#ifdef __cplusplus
extern "C" {
#endif

// 0 when the driver found the NPU and is ready; the driver's error code otherwise.
int edgekit_npu_init(void);

// The NPU's interrupt handler: put it in your vector table at the NPU's interrupt (or call it from the handler
// there) and enable that interrupt. The driver waits for it at the end of every Ethos-U operator.
void edgekit_ethosu_irq_handler(void);

#ifdef __cplusplus
}
#endif

#endif  // EDGEKIT_ETHOSU_NPU_H_
"""


def init_source(found: Driver, accelerator: str) -> str:
    return f"""// Generated by edgekit: the Ethos-U driver (ethos-u-core-driver {found.commit[:12]}, the revision TFLite
// Micro pins) started for the {accelerator}. The register base comes from your board's device header:
// compile with -DEDGEKIT_ETHOSU_BASE_ADDRESS=... (README.md).
#include <stddef.h>

#include "ethosu_driver.h"
#include "ethosu_npu.h"

#ifndef EDGEKIT_ETHOSU_BASE_ADDRESS
#error "define EDGEKIT_ETHOSU_BASE_ADDRESS: the Ethos-U's register base address on your board (README.md)"
#endif
#ifndef EDGEKIT_ETHOSU_SECURE
#define EDGEKIT_ETHOSU_SECURE 1  // the NPU's transactions as secure (1) or non-secure (0)
#endif
#ifndef EDGEKIT_ETHOSU_PRIVILEGED
#define EDGEKIT_ETHOSU_PRIVILEGED 1  // and as privileged (1) or not (0)
#endif

static struct ethosu_driver edgekit_ethosu;

void edgekit_ethosu_irq_handler(void) {{ ethosu_irq_handler(&edgekit_ethosu); }}

int edgekit_npu_init(void) {{
  // No fast memory: the model was compiled for a memory mode that keeps the whole arena in SRAM.
  return ethosu_init(&edgekit_ethosu, (void *)(EDGEKIT_ETHOSU_BASE_ADDRESS), NULL, 0, EDGEKIT_ETHOSU_SECURE,
                     EDGEKIT_ETHOSU_PRIVILEGED);
}}
"""


def kernel_sources(kernels: list[Path], tflm: Path) -> list[Path]:
    """TFLM's kernel list with the Ethos-U stub replaced by the real kernel (as TFLM's CO_PROCESSOR=ethos_u
    build specialises it)."""
    stub, real = tflm / STUB_KERNEL, tflm / NPU_KERNEL
    if not real.is_file():
        raise StageError(STAGE, f"tflite-micro has no {NPU_KERNEL}")
    return [real if path == stub else path for path in kernels] + ([] if stub in kernels else [real])


def cmake_part(found: Driver) -> str:
    """The CMakeLists.txt lines that add the driver: its tree (TFLM's downloads folder by default), headers,
    flags and sources."""
    listed = "\n".join(f'  "${{ETHOSU_DRIVER_DIR}}/{source}"' for source in found.sources)
    return f"""
# Arm's Ethos-U driver at the revision TFLM pins ({found.commit[:12]}): TFLM's `third_party_downloads` with
# CO_PROCESSOR=ethos_u puts it in the downloads folder.
set(ETHOSU_DRIVER_DIR "${{TFLM_DOWNLOADS}}/ethos_u_core_driver" CACHE PATH "ethos-u-core-driver at {found.commit}")
if(NOT EXISTS "${{ETHOSU_DRIVER_DIR}}/include/ethosu_driver.h")
  message(FATAL_ERROR "ETHOSU_DRIVER_DIR='${{ETHOSU_DRIVER_DIR}}' is not an ethos-u-core-driver tree; pass \\
-DETHOSU_DRIVER_DIR=PATH (ethos-u-core-driver at {found.commit[:12]}, see README.md)")
endif()
include_directories("${{ETHOSU_DRIVER_DIR}}/include")
add_compile_definitions({" ".join(found.definitions)})
set(ETHOSU_DRIVER_SOURCES
{listed}
)
"""


def readme_section(npu: Part, source_model: str) -> str:
    """The README's section on the Vela model, the driver and what the board must provide."""
    result, found = npu.result, npu.driver
    cpu = ", ".join(f"{op.op} ({op.reason})" for op in result.cpu_ops) or "none"
    return f"""
## Ethos-U NPU

`model_data.cc` holds the model Vela compiled from `{source_model}`: ethos-u-vela {result.vela_version} for the
{result.accelerator} ({result.system_config} at {result.clock_mhz:g} MHz, {result.memory_mode}), {result.model_bytes:,}
bytes, sha256 `{result.model_sha256}`. Its NPU work is in Ethos-U custom operators; operators Vela leaves on the
CPU: {cpu}. `model_ops.h` registers the Ethos-U operator (`AddEthosU()`) and those CPU operators.

The driver is Arm's Ethos-U core driver, **revision `{found.commit}`** ({found.url}), the one TensorFlow Lite
Micro `{npu.tflm_ref}` pins in `{DOWNLOAD_SCRIPT}`. Fetch it with TFLM's Makefile:

```sh
make -C tflite-micro -f tensorflow/lite/micro/tools/make/Makefile OPTIMIZED_KERNEL_DIR=cmsis_nn \\
  CO_PROCESSOR=ethos_u ETHOSU_ARCH={found.arch} TARGET=cortex_m_generic TARGET_ARCH=cortex-m55 third_party_downloads
```

`CMakeLists.txt` compiles TFLM with its Ethos-U kernel (`{NPU_KERNEL}`, in place of the stub
`{STUB_KERNEL}`), the driver's {", ".join(f"`{Path(s).name}`" for s in found.sources)} and
`{" ".join("-D" + d for d in found.definitions)}`, as TFLM's `{MAKE_INCLUDE}` does.

`main.cc` calls `edgekit_npu_init()` (`ethosu_npu.c`) before it makes the interpreter. Your board provides:
- `-DEDGEKIT_ETHOSU_BASE_ADDRESS=...`: the NPU's register base from the board's device header (Alif's headers for
  the Ensemble's Cortex-M55 subsystems call it `LOCAL_NPU_BASE`, and its interrupt `LOCAL_NPU_IRQ_IRQn`);
- the NPU interrupt enabled and routed to `edgekit_ethosu_irq_handler()`;
- where the core's data cache is on, the driver's cache hooks for the arena (see the driver's README at that
  revision).

The arena (`model_arena.h`, {npu.arena_bytes:,} bytes) is **estimated, not measured**: TFLite Micro cannot run this
model without the NPU. It is Vela's {result.sram_bytes:,} bytes for the compiled model's tensors (Vela plans them
offline, and TFLite Micro follows its plan), plus the {npu.persistent_bytes:,} bytes of persistent data TFLite Micro
kept for the source model on the host, plus the profile's {npu.margin:.0%} margin.
`arena_used` in the program's JSON lines is the figure to keep. The stored output is the CPU's (TFLite Micro on the
host); the NPU computes the same quantized arithmetic, and the check allows one step of difference.
edgekit neither compiles nor runs the driver and the Ethos-U kernel (it does not fetch the driver, and QEMU
emulates no Ethos-U); its tests compile the rest of this program with Arm GCC.
"""
