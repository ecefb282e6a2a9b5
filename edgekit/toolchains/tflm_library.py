"""TensorFlow Lite Micro with CMSIS-NN, compiled for one Cortex-M core, one object file at a time, cached.

The flags are those of TFLM's Makefile for `TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn
BUILD_TYPE=release_with_logs` (tools/make/Makefile and targets/cortex_m_generic_makefile.inc at the pinned
commit): the framework at -Os, the kernels and CMSIS-NN at -O2, C++17 without RTTI or exceptions, static
memory, each kernel specialised to its CMSIS-NN version where TFLM has one (its `specialize_files.py` rule).
release_with_logs keeps the error strings (a failure names its cause) and the per-op profiler events (so
instructions can be counted per op), and drops the debug checks, which TFLM says cost 5-10% of latency.

A whole library is about 270 files and a quarter of an hour of one 2-core machine, most of it kernels a
given model never calls. So edgekit compiles the framework (the interpreter, allocator, planner: always
linked) and then only what the program's link asks for: each undefined symbol the linker names is found in
the kernel or CMSIS-NN source that defines it, that file is compiled, and the link is tried again. Every
object is cached under a key of (sources, core, flags, compiler version), so each file is compiled once
per core, whatever models come later.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from edgekit.errors import StageError
from edgekit.toolchains import sources, tools
from edgekit.toolchains.cores import Core

STAGE = "tflite-micro build"
BUILD_RECIPE = 1  # bump when the flags or file lists below change: it is part of the cache key

CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=c17",)
COMMON_FLAGS = ("-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections",
                "-fmessage-length=0", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DNDEBUG",
                "-DTF_LITE_MCU_DEBUG_LOG", "-fomit-frame-pointer", "-funsigned-char", "-DCMSIS_NN",
                "-DKERNELS_OPTIMIZED_FOR_SPEED", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0", "-w")
FRAMEWORK_OPTIMIZATION, KERNEL_OPTIMIZATION = "-Os", "-O2"
PRECOMPILED = ("<cmath>", "<cstdint>", "<cstdio>", "<cstdlib>", "<cstring>",
               *(f'"tensorflow/lite/micro/{name}.h"' for name in (
                   "micro_allocator", "micro_interpreter", "micro_mutable_op_resolver", "micro_profiler_interface",
                   "micro_resource_variable")), '"tensorflow/lite/schema/schema_generated.h"')
# A column-0 function definition: `TFLMRegistration Register_CONV_2D() {`, `arm_cmsis_nn_status arm_convolve_s8(`.
# A function definition's name: a signature running on past its line, or a whole one-line definition
# (`TFLMRegistration Register_L2_NORMALIZATION() { return Register_L2NORM_REF(); }`).
_DEFINITION = re.compile(r"^[A-Za-z_][\w:<>,*& ]*?\b([A-Za-z_]\w*)\s*\((?:[^;]*$|[^;{]*\)\s*(?:const\s*)?\{)", re.M)


@dataclass(frozen=True)
class Library:
    core: Core
    root: Path  # the checked sources (edgekit.toolchains.sources)
    folder: Path  # this core's cached objects
    key: str
    recipe: dict = field(repr=False, compare=False)

    @property
    def flags(self) -> tuple[str, ...]:
        """Code generation and defines, for everything linked with the library (application, board file)."""
        return (*self.core.flags, *COMMON_FLAGS, f"-DEDGEKIT_ENABLE_FPU={int(self.core.enable_fpu)}")

    @property
    def application_flags(self) -> tuple[str, ...]:
        """How the bundle's own C++ files are compiled (TFLM's kernel level, -O2)."""
        return (*self.flags, *CXX_FLAGS, KERNEL_OPTIMIZATION, *self.include_flags)

    def precompiled_header(self) -> Path:
        """The TFLM headers an application includes, precompiled for this core (about 250 MB, once): parsing
        them is most of the 5 s it takes to compile a bundle's main.cc, and 1.5 s with this. Forced in with
        `-include`, before the file's own (guarded) includes of the same headers, so main.cc is unchanged."""
        folder = self.folder / "pch"
        header = folder / "edgekit_tflm.h"
        if (folder / "edgekit_tflm.h.gch").is_file():
            return header
        folder.mkdir(parents=True, exist_ok=True)
        header.write_text("".join(f"#include {name}\n" for name in PRECOMPILED))
        partial = folder / f".edgekit_tflm.h.gch.{os.getpid()}"
        compile_file([tools.require("arm-none-eabi-g++"), *self.application_flags, "-x", "c++-header"], header,
                     partial, "precompiling the TFLM headers")
        partial.replace(folder / "edgekit_tflm.h.gch")
        return header

    @cached_property
    def include_flags(self) -> tuple[str, ...]:
        tflm, cmsis, nn = self.root / "tflite-micro", self.root / "cmsis", self.root / "cmsis_nn"
        return tuple(f"-I{p}" for p in (tflm, self.root / "gemmlowp", self.root / "flatbuffers" / "include",
                                        self.root / "ruy", cmsis, nn, cmsis / "CMSIS" / "Core" / "Include",
                                        nn / "Include"))

    @cached_property
    def framework(self) -> list[Path]:
        return framework_sources(self.root)

    @cached_property
    def kernels(self) -> list[Path]:
        return kernel_sources(self.root)

    @cached_property
    def definitions(self) -> dict[str, list[Path]]:
        """function name -> the kernel or CMSIS-NN sources that define one of that name."""
        index = defaultdict(list)
        for path in self.kernels:
            for name in set(_DEFINITION.findall(path.read_text(errors="replace"))):
                index[name].append(path)
        return dict(index)

    def objects(self, paths: list[Path], jobs: int | None = None) -> list[Path]:
        """The object files of `paths`, compiled where not cached yet (in parallel)."""
        missing = [p for p in paths if not self.object_path(p).is_file()]
        if missing:
            with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
                list(pool.map(self._compile, missing))
        return [self.object_path(p) for p in paths]

    def object_path(self, source: Path) -> Path:
        return self.folder / (source.relative_to(self.root).as_posix().replace("/", "__") + ".o")

    def sources_defining(self, symbols: list[str]) -> list[Path]:
        """The sources that define the functions the linker reported undefined (by their last name part)."""
        found: list[Path] = []
        for symbol in symbols:
            name = re.sub(r"\(.*", "", symbol).split("::")[-1].split()[-1]
            found += [p for p in self.definitions.get(name, []) if p not in found]
        return found

    def _compile(self, source: Path) -> None:
        is_framework = source in self.framework
        level = FRAMEWORK_OPTIMIZATION if is_framework else KERNEL_OPTIMIZATION
        tool, language = ("arm-none-eabi-g++", CXX_FLAGS) if source.suffix == ".cc" else ("arm-none-eabi-gcc", C_FLAGS)
        out = self.object_path(source)
        partial = out.with_name(f".{out.name}.{os.getpid()}")
        compile_file([tools.require(tool), *self.flags, *language, level, *self.include_flags], source, partial,
                     f"compiling {source.relative_to(self.root)}")
        partial.replace(out)


def framework_sources(root: Path) -> list[Path]:
    """TFLM's MICROLITE_CC_BASE_SRCS without tests (the interpreter, allocator, planner): always linked.
    `root` holds the checked sources (edgekit.toolchains.sources.source_root)."""
    tflm = root / "tflite-micro"
    micro = tflm / "tensorflow" / "lite" / "micro"
    files = [p for folder in ("", "arena_allocator", "memory_planner", "tflite_bridge")
             for p in sorted((micro / folder).glob("*.cc")) if not p.name.endswith("_test.cc")]
    return files + sorted(p for p in (tflm / "tensorflow").rglob("*.c*") if p.suffix in (".c", ".cc")
                          and not p.is_relative_to(micro) and "experimental" not in p.parts
                          and p.relative_to(tflm).as_posix() != "tensorflow/lite/array.cc")


def kernel_sources(root: Path) -> list[Path]:
    """TFLM's MICROLITE_CC_KERNEL_SRCS, each replaced by its CMSIS-NN version where there is one, then
    CMSIS-NN's int8/int16 sources (TFLM builds them without the f16/f32 ones)."""
    micro = root / "tflite-micro" / "tensorflow" / "lite" / "micro"
    listing = (micro / "tools" / "make" / "sources.inc").read_text()
    block = re.search(r"^MICROLITE_CC_KERNEL_SRCS := \\\n(.*?)\n\n", listing, re.S | re.M)
    if block is None:
        raise StageError(STAGE, "tools/make/sources.inc has no MICROLITE_CC_KERNEL_SRCS list")
    kernels = []
    for line in block.group(1).splitlines():
        relative = line.strip().rstrip("\\").strip().replace("$(TENSORFLOW_ROOT)", "")
        if relative:
            path = root / "tflite-micro" / relative
            specialised = path.parent / "cmsis_nn" / path.name
            kernels.append(specialised if specialised.is_file() else path)
    return kernels + sorted(p for p in (root / "cmsis_nn" / "Source").rglob("*.c")
                            if not p.name.endswith(("_f16.c", "_f32.c")) and p.name != "arm_nntables_flt.c")


def library(core: Core) -> Library:
    """The cached library of `core` (its sources fetched and checked on first use; objects compiled later,
    as links need them)."""
    compiler = tools.require("arm-none-eabi-g++")
    root = sources.source_root()
    recipe = {"sources": sources.commits(), "core": core.name, "flags": core.flags, "common": COMMON_FLAGS,
              "cxx": CXX_FLAGS, "c": C_FLAGS, "compiler": tools.version(compiler), "recipe": BUILD_RECIPE}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = sources.cache_root() / "tflm" / f"{core.mcpu}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "recipe.json").is_file():
        (folder / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return Library(core, root, folder, key, recipe)


def compile_file(command: list[str], source: Path, out: Path, what: str) -> None:
    result = subprocess.run([*command, "-c", str(source), "-o", str(out)], capture_output=True, text=True)
    if result.returncode:
        error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip()[-300:])
        raise StageError(STAGE, f"{what}: {error}")
