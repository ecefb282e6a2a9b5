"""Compile and link a bundle's program for an emulated core: the bundle's own sources (main.cc, the model
array, the resolver, the arena constant, the test data) with edgekit's board file (board/board.cc: vector
table, start-up, semihosting I/O, the counting hooks) against the core's TFLM library. The link asks for
what it needs: each round compiles the kernel and CMSIS-NN sources that define the symbols the linker
reported undefined (edgekit.toolchains.tflm_library), until nothing is missing."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from edgekit.errors import StageError
from edgekit.toolchains import tools
from edgekit.toolchains.tflm_library import STAGE, Library, compile_file

BOARD = resources.files("edgekit.toolchains") / "board"
_UNDEFINED = re.compile(r"undefined reference to `([^']+)'")
MAX_LINK_ROUNDS = 8


class BoardTooSmall(StageError):
    """The program does not fit the emulated board's memory (a limit of QEMU's board, not of the device)."""


def linker_script(library: Library) -> str:
    core = library.core
    boot = core.boot or core.code
    values = {"BOOT_ORIGIN": boot.origin, "BOOT_LENGTH": boot.length, "CODE_ORIGIN": core.code.origin,
              "CODE_LENGTH": core.code.length, "RAM_ORIGIN": core.ram.origin, "RAM_LENGTH": core.ram.length}
    if core.boot is None:  # vectors and code share one region: give BOOT a slice of nothing
        values.update(BOOT_LENGTH=0x400, CODE_ORIGIN=core.code.origin + 0x400, CODE_LENGTH=core.code.length - 0x400)
    text = (BOARD / "board.ld").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", hex(value))
    return text


def build_program(library: Library, files: dict[str, str], folder: Path) -> Path:
    """Write `files` (name -> source) into `folder`, compile and link them with the board file; returns the
    ELF. A compile or link error is one StageError line."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "board.cc").write_text((BOARD / "board.cc").read_text())
    (folder / "board.ld").write_text(linker_script(library))
    compiler = tools.require("arm-none-eabi-g++")
    header = library.precompiled_header()
    flags = [compiler, *library.application_flags, f"-I{folder}"]
    app = [folder / name for name in sorted(files) if name.endswith(".cc")] + [folder / "board.cc"]
    objects = [source.with_suffix(".o") for source in app]

    def compile_one(source: Path) -> None:  # only main.cc includes the heavy headers
        forced = [f"-I{header.parent}", "-include", header.name] if source.name == "main.cc" else []
        compile_file([*flags, *forced], source, source.with_suffix(".o"), f"compiling the bundle's {source.name}")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(compile_one, app))
    linked = library.objects(library.framework)
    elf = folder / "program.elf"
    for _ in range(MAX_LINK_ROUNDS):
        undefined = _link(compiler, library, [*objects, *linked], folder, elf)
        if not undefined:
            return elf
        needed = [p for p in library.sources_defining(undefined) if library.object_path(p) not in linked]
        if not needed:
            raise StageError(STAGE, f"linking: undefined reference to {undefined[0]} (defined in no TFLM or CMSIS-NN "
                                    "source edgekit builds)")
        linked += library.objects(needed)
    raise StageError(STAGE, f"linking: still missing symbols after {MAX_LINK_ROUNDS} rounds ({undefined[0]})")


def _link(compiler: str, library: Library, objects: list[Path], folder: Path, elf: Path) -> list[str]:
    """Link; the undefined symbols when that is all that failed, else [] on success. Other errors raise."""
    command = [compiler, *library.core.flags, "-nostartfiles", "--specs=rdimon.specs", "-Wl,--gc-sections",
               "-Wl,--undefined=edgekit_mark",  # kept for the counter even in a program that never times
               f"-T{folder / 'board.ld'}", "-o", str(elf), *map(str, objects), "-Wl,--start-group", "-lstdc++", "-lm",
               "-lc", "-lrdimon", "-lgcc", "-Wl,--end-group"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return []
    undefined = list(dict.fromkeys(_UNDEFINED.findall(result.stderr)))
    if undefined:
        return undefined
    message = next((line for line in result.stderr.splitlines() if "error" in line or "overflow" in line
                    or "do not fit" in line), result.stderr.strip()[-300:])
    if "overflow" in message or "do not fit" in message:
        raise BoardTooSmall(STAGE, f"the program does not fit QEMU's {library.core.board} ({message.strip()})")
    raise StageError(STAGE, f"linking for {library.core.name}: {message.strip()}")


def symbol_address(elf: Path, symbol: str) -> int:
    result = subprocess.run([tools.require("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16) & ~1
    raise StageError(STAGE, f"{elf.name} has no symbol {symbol}")
